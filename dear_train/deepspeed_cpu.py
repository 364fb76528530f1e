"""A minimal, isolated shim so DeepSpeed (ZeRO-2/3) trains with several processes on a host WITHOUT CUDA.

Why: under ``accelerate launch --use_deepspeed`` every process has ``LOCAL_RANK`` set and
``ACCELERATE_USE_DEEPSPEED=true``. accelerate 1.15's ``PartialState._prepare_backend`` picks the process-group
backend from the accelerator it finds (nccl for CUDA, hccl, xccl, ...); on a CPU-only host it finds none and
returns ``(None, DistributedType.NO)``. DeepSpeed then initialises with 2 ranks while accelerate counts 1
process, and the HF Trainer fails with ``train_batch_size ... 4 != 4 * 1 * 2``.

What: :func:`install_deepspeed_cpu_shim` wraps ``_prepare_backend`` so that in exactly that case -- no CUDA
device, ``LOCAL_RANK`` set, ``ACCELERATE_USE_DEEPSPEED`` true, and accelerate found no backend -- it returns
``("gloo", DistributedType.MULTI_CPU)``. accelerate then lets DeepSpeed initialise over gloo and marks the state
as DEEPSPEED, exactly as on GPUs. In every other case the original method's answer is returned unchanged, and
on a CUDA host the shim is not even installed. This only matters for CI and CPU smoke runs; remove it once
accelerate handles CPU DeepSpeed itself.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

_MARK = "_dear_deepspeed_cpu_shim"


def shim_applies() -> bool:
    """True when this process is a DeepSpeed rank on a host without CUDA (the case accelerate mishandles)."""
    import torch

    return (
        not torch.cuda.is_available()
        and int(os.environ.get("LOCAL_RANK", "-1")) != -1
        and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    )


def install_deepspeed_cpu_shim() -> bool:
    """Patch ``accelerate.state.PartialState._prepare_backend`` when :func:`shim_applies`; idempotent.

    Must run before the first ``PartialState``/``Accelerator``/``TrainingArguments`` is created in the process.
    Returns True when the shim is (already) installed.
    """
    if not shim_applies():
        return False
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    original = PartialState._prepare_backend
    if getattr(original, _MARK, False):
        return True

    def _prepare_backend(self, cpu: bool = False, sagemaker_dp: bool = False, backend: str | None = None):
        result = original(self, cpu, sagemaker_dp, backend)
        if result[1] == DistributedType.NO and not cpu and backend in (None, "gloo") and shim_applies():
            return "gloo", DistributedType.MULTI_CPU
        return result

    setattr(_prepare_backend, _MARK, True)
    _prepare_backend.__wrapped__ = original  # type: ignore[attr-defined]
    PartialState._prepare_backend = _prepare_backend
    logger.info("DeepSpeed on a CPU-only host: accelerate backend set to gloo (dear_train.deepspeed_cpu)")
    return True


def uninstall_deepspeed_cpu_shim() -> None:
    """Restore accelerate's original method (tests)."""
    from accelerate.state import PartialState

    current = PartialState._prepare_backend
    if getattr(current, _MARK, False):
        PartialState._prepare_backend = current.__wrapped__  # type: ignore[attr-defined]
