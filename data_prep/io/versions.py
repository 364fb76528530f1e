"""The package versions recorded beside every result: scores drift across library versions."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

# Everything that can move a trained model's numbers or a ranking's scores.
VERSIONED_PACKAGES = ("dear-reranker", "torch", "transformers", "tokenizers", "peft", "trl", "datasets",
                      "accelerate", "deepspeed", "bitsandbytes", "liger-kernel", "vllm", "wandb", "ir-measures",
                      "pytrec-eval-terrier")


def package_versions(packages: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (absent ones omitted) and the Python version."""
    out: dict[str, str] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out
