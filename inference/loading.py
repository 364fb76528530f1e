"""Load a listwise reranker's model, tokenizer and prompt spec from a folder or a Hub id.

Accepted: a PEFT adapter folder (``adapter_config.json``; the base model comes from it unless overridden),
a merged/full model folder (``config.json`` + weights), or a Hub id of either (when the Hub is reachable).
The prompt spec is the folder's ``prompt_spec.json``; a folder without one (the released DeAR adapter) uses
``dear-card``. ``trust_remote_code`` stays off unless asked for.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from data_prep.prompts import (
    PROMPT_SPEC_FILE,
    PromptSpec,
    get_prompt_spec,
    load_prompt_spec,
    resolve_prompt_spec,
)
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

DEFAULT_SPEC = "dear-card"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = (None, "4bit", "8bit")


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


def describe_source(path: str, *, revision: str | None = None) -> dict[str, Any]:
    """What ``path`` is: {"kind": "adapter"|"model", "dir": local folder or None, "hub_id": id or None,
    "base_model": str|None}. Raises a DataError for a folder without weights."""
    p = Path(path)
    if p.is_dir():
        if (p / "adapter_config.json").is_file():
            if not any((p / w).is_file() for w in ADAPTER_WEIGHTS):
                raise DataError("adapter folder has adapter_config.json but no adapter weights",
                                path=str(p), reason="no_weights",
                                fix=f"copy {ADAPTER_WEIGHTS[0]} into the folder (a training run saves it at the end)")
            cfg = json.loads((p / "adapter_config.json").read_text(encoding="utf-8"))
            return {"kind": "adapter", "dir": p, "hub_id": None, "base_model": cfg.get("base_model_name_or_path")}
        if (p / "config.json").is_file():
            if not (any((p / w).is_file() for w in MODEL_WEIGHTS) or any(p.glob("*.safetensors"))):
                raise DataError("model folder has config.json but no weights", path=str(p), reason="no_weights",
                                fix="save the model with save_pretrained (model.safetensors) or pass the right folder")
            return {"kind": "model", "dir": p, "hub_id": None, "base_model": None}
        raise DataError("folder holds neither adapter_config.json nor config.json", path=str(p),
                        reason="no_weights", fix="pass an adapter folder, a merged model folder or a Hub id")
    if p.exists() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise DataError("model path not found", path=path, reason="not_found",
                        fix="pass an existing folder or a Hub id like owner/name")
    return _describe_hub(path, revision)


def _describe_hub(repo_id: str, revision: str | None) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        cfg_path = hf_hub_download(repo_id, "adapter_config.json", revision=revision)
    except RemoteEntryNotFoundError:  # the repo exists and is not an adapter: a full model
        return {"kind": "model", "dir": None, "hub_id": repo_id, "base_model": None}
    except RepositoryNotFoundError as err:
        raise DataError(f"no Hub repository {repo_id!r} (or it is gated/private)", path=repo_id,
                        reason="not_found", fix="check the id, or log in with `hf auth login` for gated models"
                        ) from err
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:  # offline and not in the local cache
        raise DataError(f"cannot reach the Hub for {repo_id!r} ({type(err).__name__})", path=repo_id,
                        reason="offline",
                        fix="unset HF_HUB_OFFLINE and check the network, or download the folder and pass its path"
                        ) from err
    cfg = json.loads(Path(cfg_path).read_text(encoding="utf-8"))
    return {"kind": "adapter", "dir": None, "hub_id": repo_id, "base_model": cfg.get("base_model_name_or_path")}


def resolve_spec(source: dict[str, Any], prompt: str | None, *, revision: str | None = None) -> PromptSpec:
    """``prompt`` when given (a name, a prompt_spec.json, or a folder with one), else the model folder's
    prompt_spec.json, else ``dear-card``."""
    if prompt:
        return resolve_prompt_spec(prompt)
    if source["dir"] is not None:
        spec = load_prompt_spec(source["dir"])
    else:
        spec = _hub_spec(source["hub_id"], revision)
    if spec is None:
        logger.info("no %s with the model: using the %r prompt (the released DeAR adapter's card)",
                    PROMPT_SPEC_FILE, DEFAULT_SPEC)
        return get_prompt_spec(DEFAULT_SPEC)
    return spec


def _hub_spec(repo_id: str, revision: str | None) -> PromptSpec | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return load_prompt_spec(Path(hf_hub_download(repo_id, PROMPT_SPEC_FILE, revision=revision)).parent)
    except EntryNotFoundError:  # not in the repo (or, offline, not cached): the released adapter has none
        return None


def load_kwargs(*, dtype: str, quantization: str | None, device_map: str | dict[str, Any] | None,
                trust_remote_code: bool) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments shared by the listwise and pointwise loaders."""
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype), "trust_remote_code": trust_remote_code}
    qconfig = quantization_config(quantization, dtype)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    if device_map is not None:
        kwargs["device_map"] = device_map
    return kwargs


def adapter_base(source: dict[str, Any], base_model: str | None, where: str) -> str:
    """The base model an adapter loads onto: the override, else what adapter_config.json names."""
    base = base_model or source["base_model"]
    if not base:
        raise DataError("adapter_config.json names no base model", path=where, reason="no_base_model",
                        fix="pass --base-model / base_model= (the model the adapter was trained on)")
    return base


def load_model(
    path: str,
    *,
    base_model: str | None = None,
    dtype: str = "auto",
    quantization: str | None = None,
    device_map: str | dict[str, Any] | None = "auto",
    prompt: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    merge_adapter: bool | None = None,
) -> tuple[Any, Any, PromptSpec]:
    """(model in eval mode, tokenizer, prompt spec). An adapter is merged into an unquantized base for speed
    (``merge_adapter=None``); a quantized base keeps the LoRA layers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = describe_source(path, revision=revision)
    spec = resolve_spec(source, prompt, revision=revision)
    where = str(source["dir"]) if source["dir"] is not None else source["hub_id"]
    kwargs = load_kwargs(dtype=dtype, quantization=quantization, device_map=device_map,
                         trust_remote_code=trust_remote_code)
    if source["kind"] == "adapter":
        base = adapter_base(source, base_model, where)
        from peft import PeftModel

        logger.info("loading base model %s for adapter %s", base, where)
        model = AutoModelForCausalLM.from_pretrained(base, revision=None, **kwargs)
        model = PeftModel.from_pretrained(model, where, revision=revision, is_trainable=False)
        if merge_adapter is None:
            merge_adapter = "quantization_config" not in kwargs
        if merge_adapter:
            model = model.merge_and_unload()
        tok_source = where if _has_tokenizer(source) else base
    else:
        model = AutoModelForCausalLM.from_pretrained(where, revision=revision, **kwargs)
        tok_source = where
    tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer, spec


def _has_tokenizer(source: dict[str, Any]) -> bool:
    if source["dir"] is not None:
        return any((source["dir"] / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    return True  # a Hub adapter repo: AutoTokenizer falls back with a clear error if it has none
