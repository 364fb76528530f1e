"""Publishing an export folder to the Hugging Face Hub with ``huggingface_hub``.

The token comes from ``HF_TOKEN`` or the stored login (``hf auth login``), is handed to ``HfApi`` and is
never logged, printed or written to a file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from data_prep.schema import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    repo_url: str
    commit_url: str
    revision: str


def check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise DataError(f"--push-to-hub needs OWNER/NAME, got {repo_id!r}", fix="e.g. --push-to-hub me/dear-8b-lora")


def resolve_token(*, dry_run: bool = False) -> tuple[str, str]:
    """(token, where it came from) without ever exposing the token; a clear error when there is none.

    A dry run looks the token up the same way (it reads no network, so offline mode is fine there): a dry
    run that passes means the real push will find its token too."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE and not dry_run:
        raise DataError("HF_HUB_OFFLINE is set, so nothing can be uploaded",
                        fix="unset HF_HUB_OFFLINE for the push, or use --dry-run")
    token = get_token()
    if not token:
        raise DataError("no Hugging Face token found",
                        fix="set HF_TOKEN or run `hf auth login` (needs write access to the repo)")
    return token, ("the HF_TOKEN environment variable" if os.environ.get("HF_TOKEN") else "the stored login")


TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".jinja", ".yaml", ".yml")


def check_no_token_in_folder(folder: str | Path, token: str) -> None:
    """Refuse to upload a folder whose text files contain the token (e.g. copied into a training config)."""
    needle = token.encode()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES and needle in path.read_bytes():
            raise DataError("the Hugging Face token appears in this file; refusing to upload it", path=str(path),
                            fix="remove the token from the file (and rotate the token)", reason="token_in_file")


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Create the repo if needed (and the branch for ``revision``), then upload ``folder`` as one commit."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    token, source = resolve_token()
    check_no_token_in_folder(folder, token)
    api = HfApi(token=token)
    logger.info("pushing %s to %s (private=%s, revision=%s) with the token from %s",
                folder, repo_id, private, revision or "main", source)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        commit_message=commit_message or f"Upload DeAR reranker export ({Path(folder).name})",
    )
    commit_url = str(getattr(info, "commit_url", info))
    logger.info("uploaded: %s", commit_url)
    return PushResult(repo_url=str(repo_url), commit_url=commit_url, revision=revision or "main")
