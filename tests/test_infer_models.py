"""The one model loader (inference.models): options checked before any load, adapters resolved to their base,
and the engine and loader packages import without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from data_prep.schema import DataError
from inference.models import ModelOptions, describe_source, served_model


def _adapter(folder, base: str | None):
    folder.mkdir()
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM"}
    if base is not None:
        cfg["base_model_name_or_path"] = base
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    (folder / "adapter_model.safetensors").write_bytes(b"")  # describe_source checks presence, not content
    return folder


@pytest.mark.parametrize(("field", "value", "message"), [("dtype", "fp8", "unknown dtype"),
                                                         ("quantization", "3bit", "unknown quantization")])
def test_options_are_checked_on_construction(field: str, value: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ModelOptions(**{field: value})


def test_pretrained_kwargs_carry_only_what_was_asked_for() -> None:
    import torch

    assert ModelOptions(dtype="bfloat16", device_map=None).pretrained_kwargs() == {
        "dtype": torch.bfloat16, "trust_remote_code": False}
    assert ModelOptions(device_map="cpu", trust_remote_code=True, local_files_only=True).pretrained_kwargs() == {
        "dtype": "auto", "trust_remote_code": True, "device_map": "cpu", "local_files_only": True}


def test_served_model_resolves_an_adapter_to_its_base(tmp_path) -> None:
    folder = _adapter(tmp_path / "a", "org/base")
    source = describe_source(folder)
    assert served_model(source, ModelOptions()) == ("org/base", str(folder))
    assert served_model(source, ModelOptions(base_model="/models/other")) == ("/models/other", str(folder))
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "model.safetensors").write_bytes(b"")
    assert served_model(describe_source(model_dir), ModelOptions()) == (str(model_dir), None)


def test_adapter_without_a_base_model_suggests_the_flag(tmp_path) -> None:
    source = describe_source(_adapter(tmp_path / "a", None))
    with pytest.raises(DataError, match="names no base model") as err:
        served_model(source, ModelOptions())
    assert err.value.reason == "no_base_model" and "--base-model" in str(err.value)


def test_engine_and_loader_import_without_torch(subprocess_env) -> None:
    code = ("import sys, inference, inference.engine, inference.engine.vllm, inference.models; "
            "from inference import GenerationBackend, HFBackend; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'vllm')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
