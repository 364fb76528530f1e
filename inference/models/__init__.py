"""The one model loader: ``ModelOptions`` (base model, dtype, quantization, device map, revision, remote code)
and the functions the listwise, pointwise and vLLM paths and ``dear export`` load through.

- ``options``: ``ModelOptions`` and its ``from_pretrained`` keyword arguments (dtype, bitsandbytes config).
- ``source``: what a path is (``describe_source`` -> ``ModelSource``), an adapter's base, the prompt spec.
- ``load``: tokenizers, causal LMs, one-logit classifiers, adapters, the model a server loads.

Importing this package does not import torch or transformers.
"""

from inference.models.load import (
    attach_adapter,
    load_causal_lm,
    load_sequence_classifier,
    load_tokenizer,
    pretrained_causal_lm,
    pretrained_classifier,
    served_model,
    source_tokenizer,
)
from inference.models.options import DTYPES, QUANTIZATIONS, ModelOptions, quantization_config, resolve_dtype
from inference.models.source import (
    DEFAULT_SPEC,
    ModelSource,
    adapter_base,
    check_loadable,
    describe_source,
    folder_has_tokenizer,
    resolve_spec,
)

__all__ = ["DEFAULT_SPEC", "DTYPES", "QUANTIZATIONS", "ModelOptions", "ModelSource", "adapter_base", "check_loadable",
           "attach_adapter", "describe_source", "folder_has_tokenizer", "load_causal_lm",
           "load_sequence_classifier", "load_tokenizer", "pretrained_causal_lm", "pretrained_classifier",
           "quantization_config", "resolve_dtype", "resolve_spec", "served_model", "source_tokenizer"]
