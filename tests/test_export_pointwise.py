"""`dear export` of a pointwise (stage-1) student: the folder `dear distill` writes exports as an adapter or a
merged classifier that scores pairs exactly like the source, with a card whose snippets run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _export_helpers import code_after, front_matter

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.usefixtures("one_torch_thread")]

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train" / "tiny_cpu_distill.yaml"
QUERY = "Which film won the 2023 Palme d'Or?"
DOCUMENTS = ["Cannes awards the Palme d'Or.", "A recipe for bread.", "The 2023 winner was Anatomy of a Fall."]


@pytest.fixture(scope="module")
def student(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `dear distill` output: 6 steps on DL19 pairs with BM25 as the teacher."""
    from dear_train.distill import parse_args, train_distill
    from tests._pointwise_helpers import distill_data

    tmp = tmp_path_factory.mktemp("distill")
    data, _ = distill_data(tmp, num_queries=4, depth=8)
    dargs, targs, margs = parse_args(["--config", str(CONFIG), "--model_name_or_path", str(tiny_model_dir),
                                      "--dataset_path", str(data), "--output_dir", str(tmp / "out"),
                                      "--max_steps", "6", "--save_strategy", "no"])
    train_distill(dargs, targs, margs)
    return tmp / "out"


@pytest.fixture(scope="module")
def exports(student: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from dear_train.export.build import export_adapter

    out = tmp_path_factory.mktemp("exp")
    return {"adapter": export_adapter(student, out / "adapter", dtype="fp32"),
            "merged": export_adapter(student, out / "merged", merge=True, dtype="fp32")}


def _scores(path: Path) -> list[float]:
    from inference.pointwise import PointwiseReranker

    return PointwiseReranker.from_pretrained(path, device_map="cpu", dtype="float32").score(QUERY, DOCUMENTS)


def test_adapter_and_merged_exports_score_like_the_student(exports, student):
    from data_prep.pointwise_format import load_pair_format

    source = _scores(student)
    for kind, result in exports.items():
        names = {name for name, _ in result.files}
        assert {"README.md", "dear_training.json", "pointwise_format.json", "tokenizer.json"} <= names
        assert "prompt_spec.json" not in names and not any(n.startswith("checkpoint-") for n in names)
        if kind == "adapter":
            assert {"adapter_config.json", "adapter_model.safetensors"} <= names
            assert json.loads((result.out / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
        else:
            assert "model.safetensors" in names and "adapter_config.json" not in names
        assert load_pair_format(result.out) == load_pair_format(student)
        assert result.report.export_vs_source <= 1e-4 < result.report.export_vs_base
        assert _scores(result.out) == pytest.approx(source, rel=1e-5, abs=1e-6)


def test_a_broken_merge_is_caught(student, tmp_path, monkeypatch):
    """A merged classifier whose score head is the untrained one must not be written."""
    import torch

    from dear_train.export import build as export_build
    from dear_train.export.verify import ExportVerificationError

    real = export_build.merge_and_save

    def lose_the_head(peft_model, dst, *, max_shard_size):
        merged = peft_model.merge_and_unload()
        with torch.no_grad():
            merged.score.weight.normal_(generator=torch.Generator().manual_seed(5))
        merged.save_pretrained(dst, max_shard_size=max_shard_size, safe_serialization=True)

    monkeypatch.setattr(export_build, "merge_and_save", lose_the_head)
    with pytest.raises(ExportVerificationError, match="differ from the source"):
        export_build.export_adapter(student, tmp_path / "bad", merge=True, dtype="fp32")
    assert not (tmp_path / "bad").exists()
    assert real is not lose_the_head


def test_cli_exports_a_student_and_says_what_it_checked(student, tmp_path, capsys, monkeypatch):
    from dear_train.export.cli import main

    monkeypatch.setenv("HF_TOKEN", "hf_dry_run_token")  # a dry run checks for a token as the push does
    assert main(["--adapter", str(student), "--out", str(tmp_path / "exp"), "--dtype", "fp32", "--dry-run",
                 "--push-to-hub", "me/dear-pointwise"]) == 0
    out = capsys.readouterr().out
    assert "adapter export verified on 3 queries' (query, passage) pairs" in out
    assert "pointwise_format.json" in out and "dry run: would upload" in out


def test_missing_pair_format_names_the_fix(student, tmp_path):
    import shutil

    from data_prep.schema import DataError
    from dear_train.export.build import read_source

    folder = tmp_path / "student"
    shutil.copytree(student, folder)
    (folder / "pointwise_format.json").unlink()
    with pytest.raises(DataError, match="pointwise_format.json") as err:
        read_source(folder)
    assert "save_pair_format" in str(err.value)


@pytest.mark.parametrize("kind", ["adapter", "merged"])
def test_card_describes_the_pair_input_and_its_snippets_run(exports, student, kind, monkeypatch):
    from transformers import AutoTokenizer

    from data_prep.pointwise_format import document_text, encode_pair, load_pair_format
    from data_prep.samples import load_noveleval_sample

    result = exports[kind]
    card = (result.out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["pipeline_tag"] == "text-ranking" and "pointwise" in meta["tags"]
    assert meta["library_name"] == ("peft" if kind == "adapter" else "transformers")
    assert "pointwise (stage-1)" in card and "## Input" in card and "## Prompt" not in card
    fmt = load_pair_format(result.out)
    assert json.dumps(fmt.to_json(), indent=2) in card
    tok = AutoTokenizer.from_pretrained(result.out)
    req = load_noveleval_sample()[0][0]
    ids = encode_pair(tok, req.query, document_text(req.candidates[0].text, req.candidates[0].title), fmt)
    assert f"```text\n{tok.decode(ids)}\n```" in card  # the exact input of a real pair

    expected = _scores(student)
    monkeypatch.chdir(result.out.parent)
    ours = {"query": QUERY, "documents": DOCUMENTS}
    exec(code_after(card, "### With dear-reranker"), ours)  # noqa: S102
    assert ours["scores"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    plain = {"query": QUERY, "documents": DOCUMENTS}
    exec(code_after(card, "### With transformers"), plain)  # noqa: S102
    assert plain["scores"] == pytest.approx(expected, rel=1e-5, abs=1e-6)  # the plain snippet is exact too
    assert sorted(plain["order"]) == [0, 1, 2]
