"""Fixtures and helpers for the pointwise (stage-1) tests: DL19 subsets and a tiny sequence classifier."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from data_prep.readers import read_qrels, read_rankgpt_json
from data_prep.schema import Candidate, RerankRequest
from tests.conftest import shared_path


def dl19(num_queries: int | None = None, depth: int | None = None) -> tuple[list[RerankRequest], dict]:
    """The real DL19 BM25 top-100 (with texts) and its qrels, optionally cut to fewer queries/candidates."""
    requests = read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))
    qrels = read_qrels(shared_path("trec-dl19", "qrels.dl19-passage.txt"))
    requests = requests[:num_queries] if num_queries else requests
    if depth:
        requests = [RerankRequest(r.qid, r.query, r.candidates[:depth]) for r in requests]
    return requests, qrels


def write_bm25_scores(path: Path, requests: list[RerankRequest]) -> Path:
    """The BM25 scores of the RankGPT file as a teacher-score TSV (a simple, real teacher)."""
    path.write_text("".join(f"{r.qid}\t{c.docid}\t{c.score}\n" for r in requests for c in r.candidates))
    return path


def short(requests: list[RerankRequest], chars: int) -> list[RerankRequest]:
    return [RerankRequest(r.qid, r.query, tuple(Candidate(c.docid, c.text[:chars], c.title, c.score)
                                                for c in r.candidates)) for r in requests]


def build_tiny_classifier(tiny_model_dir: Path, out: Path, seed: int = 0) -> Path:
    """A tiny LlamaForSequenceClassification (one logit) saved with its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config.pad_token_id == tok.pad_token_id is not None
    torch.nn.init.normal_(model.score.weight, std=0.5)  # a head that separates pairs
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, then restore. On a shared 2-core machine two OpenMP threads spinning
    against other processes made tiny-model training 16x slower (1.8 s/step vs 0.11 s/step with one thread)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def distill_data(tmp_path: Path, num_queries: int = 8, depth: int = 16, eval_queries: int = 0) -> tuple[Path, list]:
    """A `dear prep pointwise` folder from DL19 (passages cut to 200 chars) with BM25 as the teacher; with the
    requests it was built from."""
    from data_prep.pointwise import prep_pointwise

    requests, _ = dl19(num_queries=num_queries, depth=depth)
    requests = short(requests, 200)
    scores = write_bm25_scores(tmp_path / "bm25.tsv", requests)
    prep_pointwise(tmp_path / "data", requests, teacher_scores=scores, num_negatives=depth - 1,
                   eval_queries=eval_queries)
    return tmp_path / "data", requests
