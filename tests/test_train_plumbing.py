"""The shared training plumbing: the DeepSpeed-on-CPU shim and `--resume_from_checkpoint auto`."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def clean_shim():
    from dear_train.deepspeed_cpu import uninstall_deepspeed_cpu_shim

    uninstall_deepspeed_cpu_shim()
    yield
    uninstall_deepspeed_cpu_shim()


def test_shim_only_in_the_deepspeed_cpu_case(monkeypatch, clean_shim):
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    from dear_train.deepspeed_cpu import install_deepspeed_cpu_shim, shim_applies

    original = PartialState._prepare_backend
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert not shim_applies() and not install_deepspeed_cpu_shim()
    assert PartialState._prepare_backend is original  # not a DeepSpeed rank: nothing patched
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    assert not install_deepspeed_cpu_shim() and PartialState._prepare_backend is original

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    obj = object.__new__(PartialState)
    # unpatched accelerate on a CUDA-less host: no backend -- the bug
    assert original(obj, False, False, None) == (None, DistributedType.NO)
    assert install_deepspeed_cpu_shim() and install_deepspeed_cpu_shim()  # idempotent
    patched = PartialState._prepare_backend
    assert patched is not original
    assert patched(obj, False, False, None) == ("gloo", DistributedType.MULTI_CPU)
    # an explicit CPU run keeps accelerate's own answer
    assert patched(obj, True, False, None) == original(obj, True, False, None)
    # the condition is re-checked at call time
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    assert patched(obj, False, False, None) == (None, DistributedType.NO)


def test_shim_not_installed_with_cuda(monkeypatch, clean_shim):
    import torch
    from accelerate.state import PartialState

    from dear_train.deepspeed_cpu import install_deepspeed_cpu_shim

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    original = PartialState._prepare_backend
    assert not install_deepspeed_cpu_shim() and PartialState._prepare_backend is original


def _ckpt(root, step, *, state=True, weights=True, optimizer=True, state_step=None):
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    if weights:
        (d / "adapter_model.safetensors").write_bytes(b"x" * 10)
    if optimizer:
        (d / "optimizer.pt").write_bytes(b"x")
        (d / "scheduler.pt").write_bytes(b"x")
    if state:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step if state_step is None else state_step}))
    return d


def test_resume_auto_picks_newest_complete(tmp_path):
    from dear_train.checkpoints import checkpoint_problem, latest_complete_checkpoint, resolve_resume

    assert resolve_resume("auto", tmp_path) is None  # nothing yet: a fresh start
    _ckpt(tmp_path, 2)
    good = _ckpt(tmp_path, 10)
    _ckpt(tmp_path, 12, state=False)  # killed before trainer_state.json was written
    _ckpt(tmp_path, 14, optimizer=False)
    _ckpt(tmp_path, 16, state_step=15)
    (tmp_path / "checkpoint-18").write_text("not a folder")
    assert checkpoint_problem(tmp_path / "checkpoint-12") == "no trainer_state.json"
    assert checkpoint_problem(tmp_path / "checkpoint-14") == "no optimizer.pt"
    assert latest_complete_checkpoint(tmp_path) == good  # 10 beats 2 numerically, 12/14/16 are incomplete
    assert resolve_resume("auto", tmp_path) == str(good)
    assert resolve_resume(None, tmp_path) is None and resolve_resume("false", tmp_path) is None
    assert latest_complete_checkpoint(tmp_path, require_optimizer=False) == tmp_path / "checkpoint-14"
    from data_prep.schema import DataError

    with pytest.raises(DataError, match="no trainer_state.json"):
        resolve_resume(str(tmp_path / "checkpoint-12"), tmp_path)
    assert resolve_resume(str(tmp_path / "checkpoint-2"), tmp_path) == str(tmp_path / "checkpoint-2")


def test_deepspeed_checkpoint_counts_as_complete(tmp_path):
    from dear_train.checkpoints import checkpoint_problem

    d = _ckpt(tmp_path, 4, weights=False, optimizer=False)
    assert checkpoint_problem(d) == "no model/adapter weights"
    (d / "global_step4").mkdir()
    assert checkpoint_problem(d) is None


def test_liger_is_used_only_on_a_gpu_with_the_package(monkeypatch, caplog):
    import importlib.util

    from dear_train import config, sft

    class Args:
        use_liger_kernel = True

    monkeypatch.setattr(config, "cuda_available", lambda: False)
    a = Args()
    sft._setup_liger(a)
    assert a.use_liger_kernel is False and "liger" in caplog.text
    monkeypatch.setattr(config, "cuda_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *x: object() if name == "liger_kernel" else real_find_spec(name, *x))
    a = Args()
    sft._setup_liger(a)
    assert a.use_liger_kernel is True
