"""Checks an export must pass before it is written as final.

The known silent failure this guards against: a "merged" LoRA export that is byte-for-byte a copy of the
base model (the adapter never trained, its weights were lost when saving, its keys did not match the
model so PEFT loaded nothing, or it was merged into another base). Three layers of checks:

1. static: the adapter file has non-zero, finite ``lora_B`` tensors (:func:`check_adapter_file`);
2. loading: after ``PeftModel.from_pretrained`` the model holds exactly the tensors in the file
   (:func:`check_adapter_loaded`; PEFT only warns on key mismatches and keeps its zero init);
3. behaviour: on real ranking prompts rendered with the folder's prompt spec, the export's logits equal
   the source adapter's within a tolerance set by the dtype, and differ from the base model's
   (:func:`compare_logits`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep.prompts import PromptSpec, TokenizerLike, model_input_text, render_prompt
from data_prep.schema import DataError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Largest accepted max|logits_export - logits_source| / max|logits_source| on the probe prompts. Measured
# on the tiny Llama (merged vs unmerged): fp32 4e-7, fp16 1e-3, bf16 7e-3; an 8B model's logits are larger
# but so is its scale, and a trained ranking adapter moves them by >10% of the scale on ranking prompts.
TOLERANCES: dict[str, float] = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}
TORCH_DTYPES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class ExportVerificationError(RuntimeError):
    """The export does not behave like its source adapter; nothing was written as final."""


@dataclass(frozen=True)
class Probe:
    """One probe prompt: the exact model input and whether the tokenizer adds BOS itself."""

    qid: str
    text: str
    add_special_tokens: bool


@dataclass(frozen=True)
class VerificationReport:
    """What the behavioural check measured (relative max logit differences, see :data:`TOLERANCES`)."""

    kind: str  # "merged" | "adapter"
    dtype: str
    tolerance: float
    probes: int
    positions: int  # next-token distributions compared
    export_vs_source: float
    source_vs_base: float
    export_vs_base: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- 1. static -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterFileSummary:
    lora_b: int
    zero_lora_b: int
    modules_to_save: int
    nonfinite: tuple[str, ...]


def summarize_adapter_file(path: str | Path) -> AdapterFileSummary:
    """Count ``lora_B`` tensors, how many are exactly zero, full-module copies, and non-finite tensors."""
    import torch
    from safetensors import safe_open

    lora_b = zero = mts = 0
    nonfinite: list[str] = []
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            t = f.get_tensor(key)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                nonfinite.append(key)
            if "lora_B" in key or "lora_embedding_B" in key:
                lora_b += 1
                zero += int(not bool(t.any()))
            elif "lora_" not in key:  # a full module copy (modules_to_save, e.g. a trained lm_head)
                mts += 1
    return AdapterFileSummary(lora_b, zero, mts, tuple(nonfinite))


def check_adapter_file(path: str | Path) -> AdapterFileSummary:
    """Refuse an adapter file that cannot change the model (all lora_B zero) or holds NaN/inf."""
    s = summarize_adapter_file(path)
    if s.nonfinite:
        raise DataError(
            f"adapter holds non-finite values in {len(s.nonfinite)} tensors (first: {s.nonfinite[0]})",
            path=str(path), fix="training diverged; export an earlier checkpoint", reason="nonfinite_adapter",
        )
    if s.lora_b == 0:
        raise DataError("no LoRA tensors (lora_B) in the adapter file", path=str(path),
                        fix="pass the folder `dear train` wrote (a PEFT LoRA adapter)", reason="not_lora")
    if s.zero_lora_b == s.lora_b and s.modules_to_save == 0:
        raise DataError(
            f"all {s.lora_b} lora_B tensors are zero: this adapter does not change the base model, and a "
            "merged export would be an exact copy of the base (the LoRA never trained, or its weights were "
            "lost when saving, e.g. ZeRO-3 without gathering)",
            path=str(path), fix="export a trained checkpoint (check the training loss went down)",
            reason="zero_adapter",
        )
    if s.zero_lora_b:
        logger.warning("%d of %d lora_B tensors in %s are zero (those modules did not train)",
                       s.zero_lora_b, s.lora_b, path)
    return s


# --- 2. loading ----------------------------------------------------------------------------------------


def check_adapter_loaded(model: Any, adapter_file: str | Path, adapter_name: str = "default") -> None:
    """The PEFT model holds exactly the tensors in ``adapter_file`` (PEFT only warns on missing keys)."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(adapter_file))
    loaded = get_peft_model_state_dict(model, adapter_name=adapter_name)
    missing = sorted(set(saved) - set(loaded))
    if missing:
        raise ExportVerificationError(
            f"{len(missing)} tensors of {adapter_file} have no place in the model (first: {missing[0]}); "
            "the adapter was made for another architecture or its keys were renamed"
        )
    differ = [k for k, v in saved.items()
              if not torch.equal(v.to(device=loaded[k].device, dtype=loaded[k].dtype), loaded[k])]
    not_saved = sorted(set(loaded) - set(saved))
    if differ or not_saved:
        first = (differ or not_saved)[0]
        raise ExportVerificationError(
            f"the loaded adapter does not hold the weights in {adapter_file}: {len(differ)} tensors differ, "
            f"{len(not_saved)} were never loaded (first: {first})"
        )


# --- 3. behaviour --------------------------------------------------------------------------------------


def probe_prompts(spec: PromptSpec, tokenizer: TokenizerLike, *, n_probes: int = 3,
                  window: int = 5) -> list[Probe]:
    """Real ranking prompts: the first queries of the embedded NovelEval sample, ``window`` passages each,
    rendered with ``spec`` exactly as training and inference render them."""
    from data_prep.samples import load_noveleval_sample

    requests, _ = load_noveleval_sample()
    probes = []
    for req in requests[:n_probes]:
        prompt = render_prompt(spec, req.query, [c.passage() for c in req.candidates[:window]],
                               tokenizer=tokenizer)
        # a plain prompt gets BOS from the tokenizer; a chat template writes it itself
        probes.append(Probe(req.qid, model_input_text(prompt, tokenizer), prompt.text is not None))
    return probes


def probe_input_ids(tokenizer: Any, probes: list[Probe]) -> list[list[int]]:
    return [list(tokenizer(p.text, add_special_tokens=p.add_special_tokens)["input_ids"]) for p in probes]


def probe_logits(model: Any, input_ids: list[list[int]], *, keep_last: int = 64) -> list[torch.Tensor]:
    """Next-token logits at the last ``keep_last`` positions of every probe (the end of the ranking
    instruction, where generation starts), as float32 on the CPU. Every layer's weights shape these; keeping
    only the tail bounds memory (a 128k vocabulary makes full-prompt logits ~0.4 GB per probe)."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for ids in input_ids:
            logits = model(input_ids=torch.tensor([ids], device=device), logits_to_keep=keep_last).logits[0]
            out.append(logits[-keep_last:].float().cpu())
    return out


def relative_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """max |a - b| / max |b| over all probes; inf when either side is not finite."""
    import torch

    num = den = 0.0
    for x, y in zip(a, b, strict=True):
        if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
            return float("inf")
        num = max(num, float((x - y).abs().max()))
        den = max(den, float(y.abs().max()))
    return num / den if den > 0 else (0.0 if num == 0 else float("inf"))


def compare_logits(
    *,
    kind: str,
    dtype: str,
    export: list[torch.Tensor],
    source: list[torch.Tensor],
    base: list[torch.Tensor],
    tolerance: float | None = None,
) -> VerificationReport:
    """Raise :class:`ExportVerificationError` unless export ~= source (within the dtype's tolerance) and
    both differ from the base model.

    A merged model must differ from the base by more than the dtype's tolerance (else the merge cannot be
    told apart from the base at this precision). An exported adapter is the source's bytes on the same base
    (proven non-zero and loaded by the static and loading checks), so it only has to change the logits at all."""
    tol = TOLERANCES[dtype] if tolerance is None else tolerance
    floor = tol if kind == "merged" else 0.0
    report = VerificationReport(
        kind=kind, dtype=dtype, tolerance=tol, probes=len(source), positions=sum(len(t) for t in source),
        export_vs_source=relative_difference(export, source),
        source_vs_base=relative_difference(source, base),
        export_vs_base=relative_difference(export, base),
    )
    what = "merged model" if kind == "merged" else "exported adapter"
    if not report.source_vs_base > floor:
        hint = "; a briefly trained adapter may still be told apart with --dtype fp32" if dtype != "fp32" else ""
        raise ExportVerificationError(
            f"the adapter changes the base model's logits by only {report.source_vs_base:.3g} (relative) on "
            f"{report.probes} ranking prompts, not more than {floor:g} ({dtype}): it is a no-op at this "
            f"precision (untrained, or its weights were lost); refusing to export a copy of the base{hint}"
        )
    if not report.export_vs_source <= tol:
        raise ExportVerificationError(
            f"the {what}'s logits differ from the source adapter's by {report.export_vs_source:.3g} (relative, "
            f"tolerance for {dtype}: {tol:g}) on {report.probes} ranking prompts: a wrong merge (another base "
            "model, corrupted or missing weights) or a dtype overflow; try --dtype fp32 or bf16"
        )
    if not report.export_vs_base > floor:
        raise ExportVerificationError(
            f"the {what} equals the base model (relative logit difference {report.export_vs_base:.3g} <= "
            f"{floor:g}): the adapter was not applied"
        )
    logger.info("%s verified on %d probe prompts (%d positions): vs source %.3g, vs base %.3g (tolerance %g, %s)",
                what, report.probes, report.positions, report.export_vs_source, report.export_vs_base, tol,
                dtype)
    return report


def check_tokenizer_roundtrip(source: Any, exported: Any, probes: list[Probe]) -> None:
    """The exported tokenizer has the same chat template and turns the probe prompts into the same ids."""
    if getattr(source, "chat_template", None) != getattr(exported, "chat_template", None):
        raise ExportVerificationError("the exported tokenizer's chat template differs from the source's")
    if probe_input_ids(source, probes) != probe_input_ids(exported, probes):
        raise ExportVerificationError("the exported tokenizer tokenizes the probe prompts differently")
