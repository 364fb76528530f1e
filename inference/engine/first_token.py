"""First-token listwise scoring (FIRST, Reddy et al. 2024): one forward pass per window, ids ranked by logit.

The model input of a window is the prompt spec's exact input plus the forced start of the answer
(:func:`data_prep.prompts.answer_start`, ``" ["`` for dear-card, ``"["`` for the chat specs), so the next token
is the first id of the ranking. The logits the model gives each of the window's id tokens at that position rank
the whole window; no decoding. That needs every id to be ONE token right after the answer start, which
:func:`window_id_tokens` checks once per tokenizer and spec (and refuses with the fix otherwise). Training uses
the same table to find the first-id position of each tokenized completion (``dear_train.first_token_loss``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_prep.prompts import PromptSpec, answer_start, model_input_text, render_prompt
from data_prep.schema import DataError
from inference.engine.prefill import last_row_prefill
from inference.engine.text import tokenize_texts
from inference.engine.types import BackendStats
from inference.grad_mode import evaluating


class FirstTokenError(DataError):
    """First-token scoring cannot run with this tokenizer, spec or window; ``str()`` names the fix."""


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def answer_context(tokenizer: Any, spec: PromptSpec) -> tuple[str, bool]:
    """A rendered model input of ``spec`` (two dummy passages) with the answer start appended, and whether the
    tokenizer adds special tokens to it (plain prompts: BOS; chat templates carry their own). Every window's input
    ends the same way, so what is one token here is one token in every window."""
    start = answer_start(spec)  # raises for chain-of-thought specs
    prompt = render_prompt(spec, "query", ["first passage", "second passage"])
    if prompt.text is not None:
        return prompt.text + start, True
    return model_input_text(prompt, tokenizer) + start, False


@dataclass
class IdTokenTable:
    """Token id of each window id (shown as ``base``, ``base + 1``, ...) right after the answer start; grown on
    demand and checked once per id."""

    tokenizer: Any
    spec: PromptSpec
    tokens: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._context, self._special = answer_context(self.tokenizer, self.spec)
        self._prefix = self._encode(self._context)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=self._special)["input_ids"])

    def for_window(self, n: int) -> list[int]:
        """Token ids of the ``n`` ids of a window of ``n`` candidates, in id order; raises :class:`FirstTokenError`
        naming the first id that is not exactly one token in context."""
        base = self.spec.id_base
        while len(self.tokens) < n:
            shown = base + len(self.tokens)
            full = self._encode(f"{self._context}{shown}]")
            k = len(self._prefix)
            one = full[k: k + 1]
            ok = (full[:k] == self._prefix and len(one) == 1
                  and self.tokenizer.decode(one) == str(shown)
                  and self.tokenizer.decode(full[k + 1:]).startswith("]"))
            if not ok:
                pieces = [self.tokenizer.decode([t]) for t in full[k:]]
                raise FirstTokenError(
                    f"first-token scoring needs every window id to be one token after {answer_start(self.spec)!r}, "
                    f"but id {shown} is {pieces} with tokenizer {_tokenizer_name(self.tokenizer)} "
                    f"(prompt spec {self.spec.name})",
                    fix=f"use windows of at most {len(self.tokens)} candidates (--window), or generation "
                        "(--scoring generate)", reason="id_not_one_token")
            self.tokens.append(one[0])
        if len(set(self.tokens[:n])) != n:
            raise FirstTokenError(f"window ids {base}..{base + n - 1} do not map to distinct tokens with tokenizer "
                                  f"{_tokenizer_name(self.tokenizer)}", fix="use generation (--scoring generate)",
                                  reason="id_not_one_token")
        return self.tokens[:n]


def window_id_tokens(tokenizer: Any, spec: PromptSpec, n: int) -> list[int]:
    """One-shot form of :meth:`IdTokenTable.for_window`."""
    return IdTokenTable(tokenizer, spec).for_window(n)


# -- scoring ------------------------------------------------------------------------------------------------


@dataclass
class ScoreRequest:
    """One window to score: the exact model input (prompt + answer start) and its ids' tokens in window order."""

    key: Hashable
    text: str
    add_special_tokens: bool
    id_tokens: Sequence[int]
    token_ids: list[int] | None = None  # as GenerationRequest.token_ids: set when a passage holds special-token text


@dataclass
class WindowScores:
    key: Hashable
    logits: list[float]  # the logit of each window position's id token at the first-id position
    prompt_tokens: int


ScorePull = Callable[[int], list[ScoreRequest]]


def window_order(logits: Sequence[float], tie_break: Sequence[int]) -> list[int]:
    """Window positions best first: by logit, descending; equal logits by ``tie_break`` (first-stage rank)."""
    return sorted(range(len(logits)), key=lambda k: (-logits[k], tie_break[k]))


def id_log_probs(logits: Sequence[float]) -> list[float]:
    """Log-softmax over the window's ids only: a distribution over which candidate the model puts first."""
    top = max(logits)
    if top == -math.inf:  # no id reported at all (vLLM raw log-probs): uniform
        return [-math.log(len(logits))] * len(logits)
    log_z = top + math.log(sum(math.exp(x - top) for x in logits))
    return [x - log_z for x in logits]


class HFFirstTokenScorer:
    """One forward pass per window (prefill only, one logit row kept), batched across queries' windows.

    ``stream(pull, max_in_flight)`` takes up to ``max_in_flight`` ready windows at a time (the reranker offers at
    most one per query) and scores them in one forward. A batch of one runs unpadded through the last-row prefill
    (``inference.engine.prefill``); larger batches are right-padded (see ``_forward``), so each row's logits equal its
    unbatched ones up to float rounding. Rows are sorted by length and a batch is split where padding would
    exceed ``max_padding`` of its tokens (padding is compute thrown away on a CPU).

    ``batch_forward`` (default: on CUDA devices only) says whether the windows taken together share one forward. On
    a CPU one window at a time was measured faster (BENCHMARKS.md: unpadded, and the last-row prefill applies), so
    there the offered windows run one after another.
    """

    def __init__(self, model: Any, tokenizer: Any, *, trim_prefill: bool = True, max_padding: float = 0.25,
                 batch_forward: bool | None = None) -> None:
        self.model = model
        self.batch_forward = batch_forward
        self.tokenizer = tokenizer
        self.trim_prefill = trim_prefill
        self.max_padding = max_padding
        self.stats = BackendStats()
        self.forwards = 0
        self.padded_tokens = 0

    def _device(self) -> Any:
        return self.model.get_input_embeddings().weight.device

    def _tokenize(self, reqs: list[ScoreRequest]) -> list[list[int]]:
        return tokenize_texts(self.tokenizer, reqs)

    def _batches(self) -> bool:
        if self.batch_forward is None:
            self.batch_forward = self._device().type == "cuda"
        return self.batch_forward

    def _groups(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped for one forward each: sorted by length, cut where padding passes ``max_padding``."""
        if not self._batches():
            return [[i] for i in range(len(lengths))]
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups: list[list[int]] = []
        for i in order:
            if groups:
                g = groups[-1]
                longest = lengths[g[0]]
                real = sum(lengths[j] for j in g) + lengths[i]
                if longest * (len(g) + 1) - real <= self.max_padding * longest * (len(g) + 1):
                    g.append(i)
                    continue
            groups.append([i])
        return groups

    def _forward(self, seqs: list[list[int]]) -> Any:
        """Last-position logits (rows, vocab) of each sequence.

        Rows are RIGHT-padded and run without an attention mask: under causal attention a real token never sees
        the padding after it, so each row's logits at its own last token are exact, and attention keeps the fused
        causal kernel (a padding mask would force PyTorch's math path on a CPU: measured 5x slower than one by one).
        """
        import torch

        model, device = self.model, self._device()
        if len(seqs) == 1:
            with last_row_prefill(model, self.trim_prefill):
                out = model(input_ids=torch.tensor(seqs, device=device), use_cache=False, logits_to_keep=1)
            return out.logits[:, -1, :]
        width = max(len(s) for s in seqs)
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
        self.padded_tokens += width * len(seqs) - sum(len(s) for s in seqs)
        last = torch.tensor([len(s) - 1 for s in seqs], device=device)
        # keep the logits of every row's last position (one row's index list for all rows), then each row's own
        out = model(input_ids=ids.to(device), use_cache=False, logits_to_keep=last)
        return out.logits[torch.arange(len(seqs), device=device), torch.arange(len(seqs), device=device)]

    def score(self, reqs: list[ScoreRequest]) -> list[WindowScores]:
        """Score windows now (grouped by length), results in request order."""
        import torch

        seqs = self._tokenize(reqs)
        results: list[WindowScores | None] = [None] * len(reqs)
        t0 = time.perf_counter()
        for group in self._groups([len(s) for s in seqs]):
            logits = self._forward([seqs[i] for i in group])
            for row, i in enumerate(group):
                picked = logits[row, torch.as_tensor(list(reqs[i].id_tokens), device=logits.device)]
                results[i] = WindowScores(key=reqs[i].key, logits=picked.float().cpu().tolist(),
                                          prompt_tokens=len(seqs[i]))
            self.forwards += 1
        if self._device().type == "cuda":
            torch.cuda.synchronize()
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prefills += len(reqs)
        self.stats.prompt_tokens += sum(len(s) for s in seqs)
        return [r for r in results if r is not None]

    def stream(self, pull: ScorePull, max_in_flight: int) -> Iterator[WindowScores]:
        """Score what ``pull`` offers, ``max_in_flight`` windows at a time, until it offers nothing."""
        limit = max(1, max_in_flight)
        with evaluating(self.model):
            while True:
                reqs = pull(limit)
                if not reqs:
                    return
                yield from self.score(reqs)


class VLLMFirstTokenScorer:
    """First-token scoring through a vLLM engine (optional extra, needs a GPU): one token per window with
    ``max_tokens=1``, ``allowed_token_ids`` = the window's id tokens and ``logprobs`` = their number, so the
    returned log-probabilities cover exactly the window's ids when the engine reports processed log-probs
    (``logprobs_mode="processed_logprobs"``, set by ``VLLMBackend.from_pretrained(first_token=True)``). With raw
    log-probs (whole vocabulary) an id outside the top ``logprobs`` gets -inf and is counted in ``missing``; the
    order (a monotone map of the logits either way) is the same whenever all ids are reported.
    """

    def __init__(self, backend: Any, *, sampling_params: Callable[..., Any] | None = None) -> None:
        self.llm = backend.llm
        self.tokenizer = backend.tokenizer
        self.lora = getattr(backend, "lora", None)
        self._sampling_params = sampling_params
        self.stats = BackendStats()
        self.missing = 0  # window ids the engine reported no log-probability for

    def _params(self, req: ScoreRequest) -> Any:
        make = self._sampling_params
        if make is None:
            from vllm import SamplingParams as make
        ids = list(req.id_tokens)
        return make(max_tokens=1, temperature=0.0, logprobs=len(ids), allowed_token_ids=ids)

    def _read(self, req: ScoreRequest, output: Any, n_prompt: int) -> WindowScores:
        step = output.outputs[0].logprobs[0]  # token id -> Logprob of the one generated position
        logits = []
        for t in req.id_tokens:
            entry = step.get(t)
            if entry is None:
                self.missing += 1
                logits.append(-math.inf)
            else:
                logits.append(float(getattr(entry, "logprob", entry)))
        return WindowScores(key=req.key, logits=logits, prompt_tokens=n_prompt)

    def score(self, reqs: list[ScoreRequest]) -> list[WindowScores]:
        t0 = time.perf_counter()
        seqs = tokenize_texts(self.tokenizer, reqs)
        outputs = self.llm.generate([{"prompt_token_ids": s} for s in seqs], [self._params(r) for r in reqs],
                                    lora_request=self.lora, use_tqdm=False)
        results = [self._read(r, o, len(s)) for r, o, s in zip(reqs, outputs, seqs, strict=True)]
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prefills += len(reqs)
        self.stats.prompt_tokens += sum(len(s) for s in seqs)
        return results

    def stream(self, pull: ScorePull, max_in_flight: int) -> Iterator[WindowScores]:
        limit = max(1, max_in_flight)
        while True:
            reqs = pull(limit)
            if not reqs:
                return
            yield from self.score(reqs)
