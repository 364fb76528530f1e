"""The one place models and tokenizers are loaded: listwise (causal LM), pointwise (one-logit classifier), the
vLLM backend's model and adapter paths, and export's base and merged models.

An adapter is loaded onto its base model (``ModelOptions.base_model`` or what ``adapter_config.json`` names).
The tokenizer is the adapter folder's when it has one, else the base model's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from data_prep.pointwise_format import ensure_pad_token
from data_prep.schema import DataError
from inference.models.options import ModelOptions
from inference.models.source import ModelSource, adapter_base, as_source, check_loadable

logger = logging.getLogger(__name__)


def load_tokenizer(name_or_path: str | Path, options: ModelOptions) -> Any:
    from transformers import AutoTokenizer

    extra = {"local_files_only": True} if options.local_files_only else {}
    return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=options.trust_remote_code, **extra)


def source_tokenizer(source: ModelSource, base: str | None, options: ModelOptions) -> Any:
    """The adapter's (or model's) own tokenizer; for an adapter without one, its base model's."""
    if base is None:
        return load_tokenizer(source.where, options)
    if not source.has_tokenizer():
        return load_tokenizer(base, options)
    try:
        return load_tokenizer(source.where, options)
    except (OSError, ValueError):  # a Hub adapter repo without tokenizer files
        logger.info("no tokenizer with %s: taking the base model's (%s)", source.where, base)
        return load_tokenizer(base, options)


def pretrained_causal_lm(where: str | Path, options: ModelOptions, *, revision: str | None = None) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` with the options' dtype, quantization and device map."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(where, revision=revision, **options.pretrained_kwargs())


def pretrained_classifier(where: str | Path, options: ModelOptions, tokenizer: Any, *,
                          revision: str | None = None) -> Any:
    """A one-logit ``AutoModelForSequenceClassification``, with the pad token set as the student was trained
    (before any adapter is attached)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(where, num_labels=1, revision=revision,
                                                               **options.pretrained_kwargs())
    ensure_pad_token(tokenizer, model.config)
    return model


def attach_adapter(model: Any, where: str | Path, *, revision: str | None = None) -> Any:
    """The PEFT adapter at ``where`` on ``model``, frozen (unmerged)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, where, revision=revision, is_trainable=False)


def load_causal_lm(path: str | Path | ModelSource, options: ModelOptions, *,
                   merge_adapter: bool | None = None) -> tuple[Any, Any]:
    """(causal LM in eval mode, tokenizer). An adapter is merged into an unquantized base for speed
    (``merge_adapter=None``); a quantized base keeps the LoRA layers."""
    source = as_source(path, revision=options.revision)
    check_loadable(source, options.base_model)
    if source.kind == "adapter":
        base = adapter_base(source, options.base_model)
        logger.info("loading base model %s for adapter %s", base, source.where)
        model = pretrained_causal_lm(base, options)
        model = attach_adapter(model, source.where, revision=options.revision)
        if merge_adapter is None:
            merge_adapter = options.quantization is None
        if merge_adapter:
            model = model.merge_and_unload()
        tokenizer = source_tokenizer(source, base, options)
    else:
        model = pretrained_causal_lm(source.where, options, revision=options.revision)
        tokenizer = source_tokenizer(source, None, options)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def load_sequence_classifier(path: str | Path | ModelSource, options: ModelOptions, *,
                             merge: bool = False) -> tuple[Any, Any]:
    """(one-logit classifier in eval mode, tokenizer) from a full sequence-classification folder, a PEFT
    ``SEQ_CLS`` adapter folder (its ``score`` head saved with it), or a Hub id of either."""
    source = as_source(path, revision=options.revision)
    check_loadable(source, options.base_model)
    if source.kind == "adapter":
        base = adapter_base(source, options.base_model)
        tokenizer = source_tokenizer(source, base, options)
        logger.info("loading base classifier %s for adapter %s", base, source.where)
        model = pretrained_classifier(base, options, tokenizer)
        model = attach_adapter(model, source.where, revision=options.revision)
        if merge and options.quantization is None:
            model = model.merge_and_unload()
    else:
        tokenizer = source_tokenizer(source, None, options)
        model = pretrained_classifier(source.where, options, tokenizer, revision=options.revision)
    if getattr(model.config, "num_labels", 1) != 1:
        raise DataError(f"the model has {model.config.num_labels} labels; a pointwise reranker has one",
                        path=source.where, fix="load a model trained with num_labels=1")
    model.eval()
    return model, tokenizer


def served_model(source: ModelSource, options: ModelOptions) -> tuple[str, str | None]:
    """(the model a server such as vLLM loads, the local adapter folder it serves unmerged, or None)."""
    if source.kind != "adapter":
        return source.where, None
    base = adapter_base(source, options.base_model)
    if source.dir is not None:
        return base, str(source.dir)
    from huggingface_hub import snapshot_download

    return base, snapshot_download(str(source.hub_id), revision=options.revision)
