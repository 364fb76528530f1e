"""What differs between exporting a listwise and a pointwise adapter.

A listwise adapter (``dear train``) is a causal-LM LoRA checked on ranking prompts rendered with its
``prompt_spec.json`` (next-token logits at the end of each prompt). A pointwise adapter (``dear distill``) is a
sequence-classification LoRA with its trained one-logit ``score`` head, checked on (query, passage) pairs encoded
with its ``pointwise_format.json`` (the scores, computed exactly as ``inference.PointwiseReranker`` computes
them). Everything else, the checks, the atomic write and the card's common parts, is shared
(:mod:`dear_train.export.build`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep.pointwise_format import (
    PairFormat,
    document_text,
    encode_pair,
    load_pair_format,
    save_pair_format,
)
from data_prep.prompts import PromptSpec, load_prompt_spec, save_prompt_spec
from dear_train.export.verify import (
    ExportVerificationError,
    check_tokenizer_roundtrip,
    probe_input_ids,
    probe_logits,
    probe_prompts,
)

if TYPE_CHECKING:
    import torch

    from inference.models import ModelOptions


@dataclass(frozen=True)
class ListwiseKind:
    spec: PromptSpec
    task: str = "listwise"

    def load(self, where: str | Path, options: ModelOptions, tokenizer: Any) -> Any:
        from inference.models import pretrained_causal_lm

        return pretrained_causal_lm(where, options)

    def probes(self, tokenizer: Any, *, n_probes: int, window: int) -> Any:
        prompts = probe_prompts(self.spec, tokenizer, n_probes=n_probes, window=window)
        return prompts, probe_input_ids(tokenizer, prompts)

    def outputs(self, model: Any, tokenizer: Any, probes: Any) -> list[torch.Tensor]:
        return probe_logits(model, probes[1])

    def save_spec(self, dst: Path) -> None:
        save_prompt_spec(dst, self.spec)

    def check_copy(self, tokenizer: Any, exported_tokenizer: Any, probes: Any, dst: Path) -> None:
        check_tokenizer_roundtrip(tokenizer, exported_tokenizer, probes[0])
        if load_prompt_spec(dst) != self.spec:
            raise ExportVerificationError("the exported prompt spec differs from the source's")


@dataclass(frozen=True)
class PointwiseKind:
    pair_format: PairFormat
    task: str = "pointwise"

    def load(self, where: str | Path, options: ModelOptions, tokenizer: Any) -> Any:
        """The classifier with one logit; the pad token set as the student was trained (before its adapter)."""
        from inference.models import pretrained_classifier

        return pretrained_classifier(where, options, tokenizer)

    def probes(self, tokenizer: Any, *, n_probes: int, window: int) -> list[list[tuple[str, str]]]:
        """(query, passage) pairs: the first ``n_probes`` NovelEval sample queries, ``window`` passages each."""
        from data_prep.samples import load_noveleval_sample

        requests, _ = load_noveleval_sample()
        return [[(req.query, document_text(c.text, c.title)) for c in req.candidates[:window]]
                for req in requests[:n_probes]]

    def outputs(self, model: Any, tokenizer: Any, probes: list[list[tuple[str, str]]]) -> list[torch.Tensor]:
        """Each probe query's pair scores, as ``PointwiseReranker`` computes them, float32 on the CPU."""
        import torch

        from inference.pointwise import PointwiseReranker

        ranker = PointwiseReranker(model, tokenizer, pair_format=self.pair_format)
        return [torch.tensor(ranker.score_pairs(pairs), dtype=torch.float32) for pairs in probes]

    def save_spec(self, dst: Path) -> None:
        save_pair_format(dst, self.pair_format)

    def check_copy(self, tokenizer: Any, exported_tokenizer: Any, probes: list[list[tuple[str, str]]],
                   dst: Path) -> None:
        fmt = self.pair_format
        pairs = [p for group in probes for p in group]
        if [encode_pair(tokenizer, q, d, fmt) for q, d in pairs] != \
                [encode_pair(exported_tokenizer, q, d, fmt) for q, d in pairs]:
            raise ExportVerificationError("the exported tokenizer encodes the probe pairs differently")
        if load_pair_format(dst) != fmt:
            raise ExportVerificationError("the exported pointwise format differs from the source's")
