"""How to load a model: one frozen options object for the listwise, pointwise, vLLM and export paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data_prep.schema import DataError

DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = (None, "4bit", "8bit")


@dataclass(frozen=True)
class ModelOptions:
    """What every loader takes besides the path. ``revision`` is the path's (an adapter's or a full model's);
    an adapter's base model is loaded at its default revision. Checked on construction, before any load."""

    base_model: str | None = None  # an adapter's base model; None: the one adapter_config.json names
    dtype: str = "auto"  # one of DTYPES
    quantization: str | None = None  # None, "4bit" (nf4, double quant) or "8bit" (bitsandbytes)
    device_map: str | dict[str, Any] | None = "auto"
    revision: str | None = None
    trust_remote_code: bool = False
    local_files_only: bool = False  # never ask the Hub (export reloads what it just wrote)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise DataError(f"unknown dtype {self.dtype!r}", fix=f"use one of {list(DTYPES)}")
        if self.quantization not in QUANTIZATIONS:
            raise DataError(f"unknown quantization {self.quantization!r}", fix="use 4bit, 8bit or leave it out")

    def pretrained_kwargs(self) -> dict[str, Any]:
        """``from_pretrained`` keyword arguments (dtype, quantization, device map, remote code) for a model."""
        kwargs: dict[str, Any] = {"dtype": resolve_dtype(self.dtype), "trust_remote_code": self.trust_remote_code}
        qconfig = quantization_config(self.quantization, self.dtype)
        if qconfig is not None:
            kwargs["quantization_config"] = qconfig
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        if self.local_files_only:
            kwargs["local_files_only"] = True
        return kwargs


def resolve_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise DataError(f"unknown dtype {dtype!r}", fix=f"use one of {list(DTYPES)}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def quantization_config(quantization: str | None, dtype: str) -> Any:
    """A bitsandbytes config for ``"4bit"`` (nf4, double quant) or ``"8bit"``; None for full precision."""
    if quantization not in QUANTIZATIONS:
        raise DataError(f"unknown quantization {quantization!r}", fix="use 4bit, 8bit or leave it out")
    if quantization is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if dtype in ("auto", "bfloat16") else resolve_dtype(dtype)
    if not torch.cuda.is_available() and dtype == "auto":
        compute = torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)
