"""What a model path is (adapter or full model, folder or Hub id) and which prompt spec comes with it.

Accepted: a PEFT adapter folder (``adapter_config.json``; the base model comes from it unless overridden),
a merged/full model folder (``config.json`` + weights), or a Hub id of either (when the Hub is reachable).
The prompt spec is the folder's ``prompt_spec.json``; a folder without one (the released DeAR adapter) uses
``dear-card``. Every problem is a DataError naming the path and the fix, raised before any weights load.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from data_prep.prompts import (
    PROMPT_SPEC_FILE,
    PromptSpec,
    get_prompt_spec,
    load_prompt_spec,
    resolve_prompt_spec,
)
from data_prep.readers import load_json
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

DEFAULT_SPEC = "dear-card"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class ModelSource:
    """A checked model path: ``kind`` "adapter" or "model", a local ``dir`` or a ``hub_id``, and the base model
    an adapter's ``adapter_config.json`` names."""

    kind: str
    dir: Path | None
    hub_id: str | None
    base_model: str | None = None

    @property
    def where(self) -> str:
        """The folder or Hub id, as ``from_pretrained`` takes it."""
        return str(self.dir) if self.dir is not None else str(self.hub_id)

    def has_tokenizer(self) -> bool:
        """A local folder with tokenizer files; a Hub repo is assumed to have them (the load says if not)."""
        return self.dir is None or folder_has_tokenizer(self.dir)


def folder_has_tokenizer(folder: str | Path) -> bool:
    return any((Path(folder) / f).is_file() for f in TOKENIZER_FILES)


def describe_source(path: str | Path, *, revision: str | None = None) -> ModelSource:
    """What ``path`` is. Raises a DataError for a folder without weights or a path that is neither a folder nor a
    Hub id."""
    path = str(path)
    p = Path(path)
    if p.is_dir():
        if (p / "adapter_config.json").is_file():
            if not any((p / w).is_file() for w in ADAPTER_WEIGHTS):
                raise DataError("adapter folder has adapter_config.json but no adapter weights",
                                path=str(p), reason="no_weights",
                                fix=f"copy {ADAPTER_WEIGHTS[0]} into the folder (a training run saves it at the end)")
            cfg = load_json(p / "adapter_config.json", "adapter config",
                            fix="re-save the adapter (save_pretrained) or copy adapter_config.json again")
            return ModelSource("adapter", p, None, cfg.get("base_model_name_or_path"))
        if (p / "config.json").is_file():
            if not (any((p / w).is_file() for w in MODEL_WEIGHTS) or any(p.glob("*.safetensors"))):
                raise DataError("model folder has config.json but no weights", path=str(p), reason="no_weights",
                                fix="save the model with save_pretrained (model.safetensors) or pass the right folder")
            return ModelSource("model", p, None)
        raise DataError("folder holds neither adapter_config.json nor config.json", path=str(p),
                        reason="no_weights", fix="pass an adapter folder, a merged model folder or a Hub id")
    if p.exists() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise DataError("model path not found", path=path, reason="not_found",
                        fix="pass an existing folder or a Hub id like owner/name")
    return _describe_hub(path, revision)


def _describe_hub(repo_id: str, revision: str | None) -> ModelSource:
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
        return ModelSource("model", None, repo_id)
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
    return ModelSource("adapter", None, repo_id, cfg.get("base_model_name_or_path"))


def adapter_base(source: ModelSource, base_model: str | None) -> str:
    """The base model an adapter loads onto: the override, else what adapter_config.json names."""
    base = base_model or source.base_model
    if not base:
        raise DataError("adapter_config.json names no base model", path=source.where, reason="no_base_model",
                        fix="pass --base-model / base_model= (the model the adapter was trained on)")
    return base


def check_loadable(source: ModelSource, base_model: str | None = None) -> None:
    """What ``from_pretrained`` would otherwise fail on deep inside the loader, refused first with the path and
    the fix: truncated or corrupt safetensors (the source's and a local base model's), and an adapter whose base
    model folder was moved or deleted since training."""
    if source.dir is not None:
        check_safetensors(source.dir)
    if source.kind != "adapter":
        return
    base = adapter_base(source, base_model)
    if not _looks_local(base):
        return
    if not Path(base).expanduser().is_dir():
        # from_pretrained would take the path for a Hub id and fail inside huggingface_hub
        given = "--base-model" if base_model else f"{source.where}/adapter_config.json"
        raise DataError(f"the adapter's base model folder {base} (from {given}) does not exist", path=source.where,
                        reason="no_base_model", fix="pass --base-model / base_model= with the base model's "
                        "folder or Hub id (the model the adapter was trained on)")
    check_safetensors(Path(base).expanduser())


def _looks_local(name: str) -> bool:
    """A filesystem path rather than a Hub id (``owner/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


def check_safetensors(folder: Path) -> None:
    """Refuse a truncated or corrupt ``*.safetensors`` file before any weights load: its 8-byte header
    length, JSON header and tensor offsets must fit the file (a copy cut short by a full disk or an interrupted
    download fails here, naming the file, instead of deep inside the loader)."""
    for f in sorted(folder.glob("*.safetensors")):
        size = f.stat().st_size
        problem = None
        with f.open("rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                problem = f"header of {n} bytes does not fit the {size}-byte file"
            else:
                try:
                    header = json.loads(fh.read(n).decode("utf-8"))
                    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"),
                              default=0)
                except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, AttributeError):
                    problem = "unreadable header"
                else:
                    if 8 + n + end > size:
                        problem = f"tensors need {8 + n + end} bytes, the file has {size}"
        if problem:
            raise DataError(f"truncated or corrupt safetensors file ({problem})", path=str(f),
                            reason="corrupt_weights",
                            fix="copy or download the file again (it was cut short), or re-save the model")


def resolve_spec(source: ModelSource, prompt: str | None, *, revision: str | None = None) -> PromptSpec:
    """``prompt`` when given (a name, a prompt_spec.json, or a folder with one), else the model folder's
    prompt_spec.json, else ``dear-card``."""
    if prompt:
        return resolve_prompt_spec(prompt)
    spec = load_prompt_spec(source.dir) if source.dir is not None else _hub_spec(str(source.hub_id), revision)
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


def as_source(path: str | Path | ModelSource, *, revision: str | None = None) -> ModelSource:
    return path if isinstance(path, ModelSource) else describe_source(path, revision=revision)

