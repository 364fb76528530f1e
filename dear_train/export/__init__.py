"""`dear export`: verify a trained adapter, write a clean or merged folder with its model card, publish it.

One concern per module: :mod:`.cli` (the thin `dear export` command), :mod:`.build` (reads the adapter
folder, assembles the export in a temporary folder, moves it into place atomically), :mod:`.kinds` (what
differs between a listwise and a pointwise adapter), :mod:`.verify` (the checks against a merged export
that silently equals its base model), :mod:`.model_card` (README.md with Hub metadata, eval table and
the exact prompt) and :mod:`.hub` (token handling and the upload).

Importing this package (or any of its modules) does not import torch: the heavy imports are inside the
functions, so `dear export --help` stays instant.
"""

from dear_train.export.build import ExportResult, SourceAdapter, export_adapter, read_source
from dear_train.export.hub import PushResult, push_folder
from dear_train.export.model_card import build_model_card
from dear_train.export.verify import ExportVerificationError, VerificationReport

__all__ = ["ExportResult", "ExportVerificationError", "PushResult", "SourceAdapter", "VerificationReport",
           "build_model_card", "export_adapter", "push_folder", "read_source"]
