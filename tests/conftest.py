"""Shared fixtures: the tiny offline model, the real data under ../shared/data, an env for subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# haystack-ai reports usage to a remote service on import unless told not to: tests never touch the network
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
# The real data (TREC DL, NovelEval, SciFact, teacher outputs, raw LLM responses) lives beside the checkout;
# DEAR_SHARED_DATA points elsewhere. It is not shipped (licenses), so a fresh clone skips the tests that read
# it, loudly; CI sets DEAR_REQUIRE_SHARED_DATA=1 and fails instead.
SHARED_DATA = Path(os.environ.get("DEAR_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_SKIP = "shared data not present"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data; the test is skipped with a clear reason when the folder is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{SHARED_SKIP}: {p}")
    return p


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_SKIP}: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny-model work is overhead-bound: on a shared 2-core machine a second OpenMP thread only spins
    (measured 10-50x slower per decode step, 50-90 s CPU against 8 s under load). Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-3.1-architecture model + Llama-3-style tokenizer, built once per session."""
    from dear_train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def subprocess_env() -> dict[str, str]:
    """Environment for child processes (torchrun, accelerate, the `dear` CLI): repo importable, offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture()
def dear_cmd() -> list[str]:
    """How tests invoke the `dear` console script (works with or without an installed entry point)."""
    return [sys.executable, "-m", "dear_train.cli"]


def _shared_data_skips(terminalreporter) -> int:
    return sum(1 for rep in terminalreporter.stats.get("skipped", [])
               if isinstance(rep.longrepr, tuple) and SHARED_SKIP in str(rep.longrepr[-1]))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = _shared_data_skips(terminalreporter)
    if n:
        terminalreporter.write_line(
            f"!!! {n} tests SKIPPED because the shared data is missing ({SHARED_DATA}): put the project's "
            "shared/data folder beside the checkout (see tests/conftest.py) or set DEAR_SHARED_DATA; "
            "CI fails on these skips (DEAR_REQUIRE_SHARED_DATA=1) !!!", red=True, bold=True)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get("DEAR_REQUIRE_SHARED_DATA") != "1":
        return
    if _shared_data_skips(reporter) and session.exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(scope="module")
def prep_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The training tests' listwise prep folder (DL19 BM25 windows in qrels order; 8 train records: with 2 per
    device and 2 processes an epoch is 2 optimizer steps), built once per test module."""
    from tests._train_helpers import build_prep_folder

    return build_prep_folder(tmp_path_factory.mktemp("prep"), shared_data)


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir: Path, prep_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short SFT run's adapter on ``prep_dir``: where GRPO starts from."""
    from tests._train_helpers import train_sft_adapter

    return train_sft_adapter(tiny_model_dir, prep_dir, tmp_path_factory.mktemp("sft") / "out")
