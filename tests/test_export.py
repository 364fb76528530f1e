"""`dear export`: verification before anything is final, clean/merged folders that reload and behave like the
source adapter, the model card, and the Hub push up to the upload call."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from _export_helpers import EVAL_RECORDS, code_after, front_matter, make_adapter_folder

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.usefixtures("one_torch_thread")]

SENTINEL_TOKEN = "hf_SENTINELtokenDoNotLeak0123456789"


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter_folder(tiny_model_dir, tmp_path_factory.mktemp("train") / "out")


@pytest.fixture(scope="module")
def adapter_export(adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from dear_train.export.build import export_adapter

    return export_adapter(adapter_dir, tmp_path_factory.mktemp("exp") / "adapter", dtype="fp32")


@pytest.fixture(scope="module")
def merged_fp32(adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from dear_train.export.build import export_adapter

    return export_adapter(adapter_dir, tmp_path_factory.mktemp("exp") / "merged32", merge=True, dtype="fp32")


@pytest.fixture(scope="module")
def other_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and tokenizer as the tiny model, different random weights."""
    from dear_train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("other-base"), seed=1)


def _probe_ids(folder: Path) -> tuple[object, list[list[int]]]:
    from transformers import AutoTokenizer

    from data_prep.prompts import load_prompt_spec
    from dear_train.export.verify import probe_input_ids, probe_prompts

    tok = AutoTokenizer.from_pretrained(folder)
    spec = load_prompt_spec(folder)
    assert spec is not None
    return tok, probe_input_ids(tok, probe_prompts(spec, tok, n_probes=2, window=4))


def _source_model(base: Path, adapter: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter).eval()


def _no_leftovers(out: Path) -> None:
    assert not out.exists(), f"{out} must not exist after a failed export"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")], "temp dir left"


# --- refusal and verification --------------------------------------------------------------------------


def test_zero_adapter_is_refused_and_nothing_is_written(tiny_model_dir, tmp_path, capsys):
    from dear_train.export.cli import main

    zero = make_adapter_folder(tiny_model_dir, tmp_path / "zero", zero=True)
    for extra in ([], ["--merge"]):
        out = tmp_path / f"out{len(extra)}"
        assert main(["--adapter", str(zero), "--out", str(out), *extra]) == 1
        err = capsys.readouterr().err
        assert "all 14 lora_B tensors are zero" in err and "copy of the base" in err
        _no_leftovers(out)


def test_adapter_whose_keys_do_not_load_is_caught(tiny_model_dir, adapter_dir, tmp_path):
    """PEFT only warns when adapter keys miss the model and keeps lora_B at zero: a merge would equal the base."""
    import shutil

    from safetensors.torch import load_file, save_file

    from dear_train.export.build import export_adapter
    from dear_train.export.verify import ExportVerificationError

    bad = tmp_path / "renamed"
    shutil.copytree(adapter_dir, bad)
    tensors = load_file(bad / "adapter_model.safetensors")
    save_file({k.replace("layers.1.", "layers.9."): v for k, v in tensors.items()}, bad / "adapter_model.safetensors")
    out = tmp_path / "out"
    with pytest.raises(ExportVerificationError, match="have no place in the model"):
        export_adapter(bad, out, merge=True, dtype="fp32")
    _no_leftovers(out)


def _merge_into_other_base(other_base: Path, adapter_dir: Path):
    def merge(peft_model, dst, *, max_shard_size):
        import torch

        merged = _source_model(other_base, adapter_dir).merge_and_unload().to(torch.bfloat16)
        merged.save_pretrained(dst, max_shard_size=max_shard_size)
    return merge


def _save_base_unmerged(peft_model, dst, *, max_shard_size):
    peft_model.unload().save_pretrained(dst, max_shard_size=max_shard_size)  # LoRA dropped, not merged


def _merge_then_corrupt(peft_model, dst, *, max_shard_size):
    import torch

    merged = peft_model.merge_and_unload()
    with torch.no_grad():
        merged.model.layers[1].mlp.down_proj.weight.zero_()  # one lost tensor of one shard
    merged.save_pretrained(dst, max_shard_size=max_shard_size)


def _merge_in_fp32(peft_model, dst, *, max_shard_size):
    import torch

    peft_model.merge_and_unload().to(torch.float32).save_pretrained(dst, max_shard_size=max_shard_size)


@pytest.mark.parametrize("failure", ["other_base", "base_unmerged", "corrupted", "wrong_dtype"])
def test_wrong_merge_is_caught_before_out_exists(failure, adapter_dir, other_base, tmp_path, monkeypatch):
    from dear_train.export import build as export_build
    from dear_train.export.build import export_adapter
    from dear_train.export.verify import ExportVerificationError

    broken = {"other_base": _merge_into_other_base(other_base, adapter_dir),
              "base_unmerged": _save_base_unmerged, "corrupted": _merge_then_corrupt,
              "wrong_dtype": _merge_in_fp32}[failure]
    monkeypatch.setattr(export_build, "merge_and_save", broken)
    out = tmp_path / "merged"
    expected = {"other_base": "differ from the source adapter", "corrupted": "differ from the source adapter",
                "base_unmerged": "equals the base model|differ from the source adapter",
                "wrong_dtype": r"merged shards hold \['F32'\] tensors, expected BF16"}[failure]
    with pytest.raises(ExportVerificationError, match=expected):
        export_adapter(adapter_dir, out, merge=True, dtype="bf16")  # caught even at bf16's loose tolerance
    _no_leftovers(out)


def test_compare_logits_refuses_a_no_op_and_accepts_a_faithful_export():
    import torch

    from dear_train.export.verify import ExportVerificationError, compare_logits

    g = torch.Generator().manual_seed(0)
    base = [torch.randn(7, 11, generator=g)]
    source = [base[0] + 0.5 * torch.randn(7, 11, generator=g)]
    with pytest.raises(ExportVerificationError, match="no-op"):
        compare_logits(kind="merged", dtype="fp32", export=base, source=base, base=base)
    with pytest.raises(ExportVerificationError, match="differ from the source"):
        compare_logits(kind="merged", dtype="fp32", export=[source[0] + 1e-2], source=source, base=base)
    with pytest.raises(ExportVerificationError, match="differ from the source"):
        compare_logits(kind="merged", dtype="fp16", export=[source[0] * float("nan")], source=source, base=base)
    report = compare_logits(kind="merged", dtype="bf16", export=[source[0] + 1e-3], source=source, base=base)
    assert report.export_vs_source < report.tolerance < report.export_vs_base
    # a weak adapter: too close to the base for a bf16 merge, but a faithful adapter export is fine
    weak = [base[0] + 1e-5 * base[0].abs().max()]
    with pytest.raises(ExportVerificationError, match="no-op at this precision.*--dtype fp32"):
        compare_logits(kind="merged", dtype="bf16", export=weak, source=weak, base=base)
    assert compare_logits(kind="adapter", dtype="bf16", export=weak, source=weak, base=base).export_vs_source == 0
    with pytest.raises(ExportVerificationError, match="exported adapter equals the base model"):
        compare_logits(kind="adapter", dtype="bf16", export=base, source=weak, base=base)


# --- what a successful export holds ---------------------------------------------------------------------


def test_adapter_export_is_clean_and_reloads_with_identical_logits(adapter_export, adapter_dir, tiny_model_dir):
    import torch
    from peft import AutoPeftModelForCausalLM

    out = adapter_export.out
    names = {p.name for p in out.iterdir()}
    assert names == {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                     "chat_template.jinja", "prompt_spec.json", "dear_training.json", "ranking_eval.jsonl",
                     "README.md"}
    assert dict(adapter_export.files).keys() == names
    assert (out / "adapter_model.safetensors").read_bytes() == (adapter_dir / "adapter_model.safetensors").read_bytes()
    assert json.loads((out / "dear_training.json").read_text()) == json.loads(
        (adapter_dir / "dear_training.json").read_text())
    assert adapter_export.report.export_vs_source == 0.0 and adapter_export.report.export_vs_base > 0.1

    _, ids = _probe_ids(out)
    exported = AutoPeftModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    source = _source_model(tiny_model_dir, adapter_dir)
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([row])
            assert torch.equal(exported(input_ids=x).logits, source(input_ids=x).logits)


def test_merged_export_reloads_and_matches_the_adapter(merged_fp32, adapter_dir, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    out = merged_fp32.out
    assert not (out / "adapter_config.json").exists()
    assert {"config.json", "prompt_spec.json", "tokenizer.json", "chat_template.jinja", "README.md",
            "dear_training.json"} <= {p.name for p in out.iterdir()}
    _, ids = _probe_ids(out)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    source = _source_model(tiny_model_dir, adapter_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([row])
            m, s, b = (model(input_ids=x).logits for model in (merged, source, base))
            torch.testing.assert_close(m, s, atol=1e-5, rtol=1e-5)
            assert (m - b).abs().max() > 0.1


def test_merged_dtype_and_shards_are_honoured(adapter_dir, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from dear_train.export.build import export_adapter

    result = export_adapter(adapter_dir, tmp_path / "m16", merge=True, dtype="fp16", max_shard_size="200KB")
    out = result.out
    shards = sorted(out.glob("model-*.safetensors"))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(shards) >= 2 and set(index["weight_map"].values()) == {s.name for s in shards}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    assert {p.dtype for p in AutoModelForCausalLM.from_pretrained(out).parameters()} == {torch.float16}
    assert result.report.dtype == "fp16" and result.report.export_vs_source <= result.report.tolerance


def _rerank(path: Path, requests, **kwargs):
    from inference.reranker import ListwiseReranker

    reranker = ListwiseReranker.from_pretrained(str(path), dtype="float32", device_map="cpu", window=5, stride=3,
                                                top_k=7, batch_size=4, **kwargs)
    return [(r.qid, r.docids, tuple(w.raw for w in r.windows)) for r in reranker.rerank_batch(requests)]


def test_exports_rerank_the_same_as_the_source_adapter(adapter_export, merged_fp32, adapter_dir, tiny_model_dir):
    """inference.ListwiseReranker on held-out NovelEval queries: the exported adapter and the merged export
    give the source adapter's rankings and the very same raw window generations; the base model does not."""
    from data_prep.samples import load_noveleval_sample

    requests, _ = load_noveleval_sample()
    held_out = [replace(r, candidates=r.candidates[:7]) for r in requests[15:17]]
    source = _rerank(adapter_dir, held_out)
    assert _rerank(adapter_export.out, held_out) == source
    assert _rerank(merged_fp32.out, held_out) == source
    base = _rerank(tiny_model_dir, held_out, prompt="dear-card")
    assert [raw for *_, raw in base] != [raw for *_, raw in source]  # the comparison can fail


# --- model card ----------------------------------------------------------------------------------------


def test_model_card_states_config_evals_and_the_exact_prompt(adapter_export, merged_fp32):
    from transformers import AutoTokenizer

    from data_prep.prompts import DEAR_CARD
    from dear_train.export.model_card import example_prompt

    card = (adapter_export.out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert {"reranking", "dear", "listwise"} <= set(meta["tags"]) and "license" in meta
    assert "base_model" not in meta  # the tiny base is a local path, which is no Hub id
    assert front_matter((merged_fp32.out / "README.md").read_text())["library_name"] == "transformers"

    assert "| r | 4 |" in card and "| lora_alpha | 8 |" in card and "`q_proj`" in card
    assert "| learning_rate | 0.0002 |" in card and "| transformers | `" in card
    for rec in EVAL_RECORDS:  # nDCG table, in %
        assert f"| {rec['step']} | {rec['dataset']} | {100 * rec['metrics']['ndcg@5']:.2f} | " \
               f"{100 * rec['metrics']['ndcg@10']:.2f} |" in card

    tok = AutoTokenizer.from_pretrained(adapter_export.out)
    _, _, prompt = example_prompt(DEAR_CARD, tok)
    assert f"```text\n{prompt.text}\n```" in card
    snippet = card.split("prompt = ", 1)[1].split("\ninputs = ", 1)[0]
    assert eval(snippet) == prompt.text  # noqa: S307 - the usage snippet builds the exact training prompt
    assert 'AutoPeftModelForCausalLM.from_pretrained("./adapter"' in card
    assert 'ListwiseReranker.from_pretrained("./adapter")' in card and "dear rerank --model ./adapter --input" in card


@pytest.mark.parametrize("which", ["adapter_export", "merged_fp32"])
def test_model_card_usage_snippets_run(which, request, monkeypatch, capsys):
    """Both snippets of the card run as written against the exported folder (relative to its parent)."""
    result = request.getfixturevalue(which)
    card = (result.out / "README.md").read_text()
    monkeypatch.chdir(result.out.parent)
    documents = ["Cannes awards the Palme d'Or.", "A recipe for bread.", "The 2023 winner was Anatomy of a Fall."]
    scope = {"query": "Which film won the 2023 Palme d'Or?", "documents": documents}
    exec(code_after(card, "### With dear-reranker"), scope)  # noqa: S102
    assert sorted(scope["order"]) == [0, 1, 2]
    plain = {}
    code = code_after(card, "### With transformers")
    assert "max_new_tokens=200" in code  # shortened below: a random tiny model never writes its end token
    exec(code.replace("max_new_tokens=200", "max_new_tokens=8"), plain)  # noqa: S102
    assert plain["out"].shape[1] > plain["inputs"]["input_ids"].shape[1]  # it generated
    assert capsys.readouterr().out.strip()


def test_model_card_hub_metadata_and_missing_evals(adapter_dir):
    from data_prep.prompts import RANKGPT
    from dear_train.export.model_card import build_model_card

    training = json.loads((adapter_dir / "dear_training.json").read_text())
    training["base_model"] = "meta-llama/Llama-3.1-8B-Instruct"
    training["dataset"]["path"] = "someone/dear-listwise-sft"
    card = build_model_card(training=training, adapter_config=json.loads((adapter_dir / "adapter_config.json").read_text()),
                            spec=RANKGPT, evals=[], merged=False, dtype="bf16", repo_id="me/dear-lora")
    meta = front_matter(card)
    assert meta["base_model"] == "meta-llama/Llama-3.1-8B-Instruct" and meta["license"] == "llama3.1"
    assert meta["datasets"] == ["someone/dear-listwise-sft"]
    assert "No ranking evaluation was recorded" in card
    assert "apply_chat_template(messages, add_generation_prompt=True" in card  # chat specs: messages snippet
    assert "You are RankLLM" in card


# --- dry run and push ----------------------------------------------------------------------------------


class _HubCalls:
    """Stand-ins for HfApi's network methods that record their arguments (the upload itself is the library's)."""

    def __init__(self, monkeypatch, *, allow: bool) -> None:
        from huggingface_hub import HfApi, constants

        self.calls: list[tuple[str, dict]] = []
        self.allow = allow
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        for name in ("create_repo", "create_branch", "upload_folder", "whoami"):
            monkeypatch.setattr(HfApi, name, self._recorder(name))

    def _recorder(self, name: str):
        calls, allow = self.calls, self.allow

        def method(api, *args, **kwargs):
            if not allow:
                raise AssertionError(f"network call HfApi.{name} in a dry run")
            kwargs = dict(kwargs, _token=api.token)
            if name == "upload_folder":
                kwargs["_files"] = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
                calls.append((name, kwargs))
                return type("CommitInfo", (), {"commit_url": "https://huggingface.co/me/dear-test/commit/abc"})()
            calls.append((name, {"args": args, **kwargs}))
            return "https://huggingface.co/me/dear-test"
        return method


def test_dry_run_builds_verifies_and_lists_the_folder_without_network(adapter_dir, tmp_path, monkeypatch, capsys):
    from dear_train.export.cli import main

    hub = _HubCalls(monkeypatch, allow=False)
    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)  # a dry run checks for a token as the push does
    out = tmp_path / "dry"
    rc = main(["--adapter", str(adapter_dir), "--out", str(out), "--dry-run", "--push-to-hub", "me/dear-test",
               "--private", "--revision", "v1"])
    stdout = capsys.readouterr().out
    assert rc == 0 and hub.calls == []
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    listed = [line.split()[0] for line in stdout.splitlines() if line.startswith("  ")]
    assert listed == files and "README.md" in files and "adapter_model.safetensors" in files
    size_line = next(line for line in stdout.splitlines() if line.strip().startswith("adapter_model.safetensors"))
    assert size_line.split()[-2:] == [f"{(out / 'adapter_model.safetensors').stat().st_size / 1024:.1f}", "KB"]
    assert f"would upload these {len(files)} files" in stdout and "me/dear-test (private, revision v1)" in stdout


def test_push_calls_the_hub_with_the_token_hidden(adapter_dir, tmp_path, monkeypatch, capsys, caplog):
    import logging

    from dear_train.export.cli import main

    caplog.set_level(logging.DEBUG)
    hub = _HubCalls(monkeypatch, allow=True)
    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    out = tmp_path / "pushed"
    rc = main(["--adapter", str(adapter_dir), "--out", str(out), "--merge", "--push-to-hub", "me/dear-test",
               "--private", "--revision", "v1", "--commit-message", "first export"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    names = [n for n, _ in hub.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    repo, branch, upload = (kw for _, kw in hub.calls)
    assert repo["args"] == ("me/dear-test",) and repo["private"] is True and repo["exist_ok"] is True
    assert branch["args"] == ("me/dear-test",) and branch["branch"] == "v1" and branch["exist_ok"] is True
    assert upload["repo_id"] == "me/dear-test" and Path(upload["folder_path"]) == out
    assert upload["revision"] == "v1" and upload["commit_message"] == "first export"
    assert "README.md" in upload["_files"] and "model.safetensors" in upload["_files"]
    assert {kw["_token"] for _, kw in hub.calls} == {SENTINEL_TOKEN}  # the token reached the client ...
    everything = captured.out + captured.err + caplog.text
    assert "uploaded to me/dear-test" in captured.out and "HF_TOKEN" in caplog.text
    assert SENTINEL_TOKEN not in everything  # ... and nothing else
    for p in out.rglob("*"):
        if p.is_file():
            assert SENTINEL_TOKEN.encode() not in p.read_bytes(), p


def test_push_without_a_token_fails_before_building(adapter_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    from dear_train.export.cli import main

    _HubCalls(monkeypatch, allow=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    out = tmp_path / "never"
    assert main(["--adapter", str(adapter_dir), "--out", str(out), "--push-to-hub", "me/dear-test"]) == 1
    assert "no Hugging Face token" in capsys.readouterr().err
    assert not out.exists()


def test_existing_output_and_bad_arguments_are_refused(adapter_dir, tmp_path, capsys):
    from dear_train.export.cli import main

    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["--adapter", str(adapter_dir), "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err and os.listdir(out) == ["keep.txt"]
    assert main(["--adapter", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 1
    assert "adapter folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--adapter", str(adapter_dir), "--out", str(tmp_path / "y"), "--private"])
    import shutil

    pointwise = tmp_path / "pointwise"
    shutil.copytree(adapter_dir, pointwise)
    cfg = json.loads((pointwise / "adapter_config.json").read_text())
    (pointwise / "adapter_config.json").write_text(json.dumps({**cfg, "task_type": "SEQ_CLS"}))
    assert main(["--adapter", str(pointwise), "--out", str(tmp_path / "p")]) == 1
    assert "missing pointwise_format.json" in capsys.readouterr().err  # a SEQ_CLS adapter is a pointwise student
    (pointwise / "adapter_config.json").write_text(json.dumps({**cfg, "task_type": "TOKEN_CLS"}))
    assert main(["--adapter", str(pointwise), "--out", str(tmp_path / "p")]) == 1
    assert "listwise (CAUSAL_LM) and pointwise (SEQ_CLS) adapters" in capsys.readouterr().err
    (pointwise / "prompt_spec.json").unlink()
    (pointwise / "adapter_config.json").write_text(json.dumps(cfg))
    assert main(["--adapter", str(pointwise), "--out", str(tmp_path / "p")]) == 1
    assert "missing prompt_spec.json" in capsys.readouterr().err and not (tmp_path / "p").exists()
    assert main(["--adapter", str(adapter_dir), "--out", str(tmp_path / "z"), "--push-to-hub", "noslash"]) == 1
    import torch

    if not torch.cuda.is_available():
        assert main(["--adapter", str(adapter_dir), "--out", str(tmp_path / "g"), "--device", "cuda"]) == 1
        assert "no CUDA device is visible" in capsys.readouterr().err and not (tmp_path / "g").exists()


def test_lm_head_trained_as_a_full_copy_counts_as_training(tiny_model_dir, tmp_path):
    """lora_B all zero but a trained lm_head (modules_to_save, as the quickstart trains it) is a real adapter;
    the same adapter with an untouched lm_head copy is a no-op and is refused. Chat (RankGPT) prompts."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from data_prep.prompts import RANKGPT
    from dear_train.export.build import export_adapter
    from dear_train.export.verify import ExportVerificationError

    head = make_adapter_folder(tiny_model_dir, tmp_path / "head", zero=True, modules_to_save=["lm_head"],
                               spec=RANKGPT, with_eval=False)
    result = export_adapter(head, tmp_path / "merged", merge=True, dtype="fp32")
    trained = load_file(head / "adapter_model.safetensors")["base_model.model.lm_head.weight"]
    merged = AutoModelForCausalLM.from_pretrained(result.out)
    assert torch.equal(merged.lm_head.weight, trained) and result.report.export_vs_base > 0.01

    idle = make_adapter_folder(tiny_model_dir, tmp_path / "idle", zero=True, modules_to_save=["lm_head"],
                               train_saved_modules=False)
    with pytest.raises(ExportVerificationError, match="no-op"):
        export_adapter(idle, tmp_path / "idle-out", dtype="fp32")
    _no_leftovers(tmp_path / "idle-out")


def test_help_is_instant_and_routed_by_the_dispatcher(dear_cmd, subprocess_env):
    import subprocess
    import sys

    proc = subprocess.run([*dear_cmd, "export", "--help"], env=subprocess_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "--push-to-hub" in proc.stdout and "--dry-run" in proc.stdout
    probe = "import sys; from dear_train.export import build, cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_failed_upload_keeps_the_verified_export_and_says_how_to_retry(adapter_dir, tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from dear_train.export.cli import main

    _HubCalls(monkeypatch, allow=True)

    def refuse(api, **kwargs):
        import httpx

        request = httpx.Request("POST", "https://huggingface.co/api/models/me/dear-test/commit/main")
        raise HfHubHTTPError("403 Forbidden: you do not have write access to me/dear-test",
                             response=httpx.Response(403, request=request))

    monkeypatch.setattr(HfApi, "upload_folder", refuse)
    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    out = tmp_path / "kept"
    assert main(["--adapter", str(adapter_dir), "--out", str(out), "--dtype", "fp32",
                 "--push-to-hub", "me/dear-test"]) == 1
    captured = capsys.readouterr()
    assert "403 Forbidden" in captured.err and f"hf upload me/dear-test {out}" in captured.err
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    assert SENTINEL_TOKEN not in captured.out + captured.err


def test_a_token_inside_the_folder_blocks_the_upload(tmp_path, monkeypatch):
    from data_prep.schema import DataError
    from dear_train.export import hub

    calls = _HubCalls(monkeypatch, allow=True)
    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    (tmp_path / "dear_training.json").write_text(json.dumps({"config": {"hub_token": SENTINEL_TOKEN}}))
    with pytest.raises(DataError, match="token appears in this file") as err:
        hub.push_folder(tmp_path, "me/dear-test")
    assert SENTINEL_TOKEN not in str(err.value) and calls.calls == []
