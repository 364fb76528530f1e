"""`dear serve`'s pieces without a server: scores, input checks, the key, the CLI's refusals."""

from __future__ import annotations

import pytest

from inference.serve.auth import authorized
from inference.serve.config import ServeConfig
from inference.serve.schemas import InputError, RerankV1Request, RerankV2Request, error_field, prepare
from inference.serve.scores import EPSILON, rank_relevance, relevance_scores, window_probabilities


def test_rank_scores_are_in_0_1_and_strictly_decreasing():
    assert rank_relevance(4) == [1.0, 0.75, 0.5, 0.25]
    assert rank_relevance(1) == [1.0]
    # generation mode: no probabilities, ranks decide
    assert relevance_scores(3) == [1.0, 2 / 3, 1 / 3]


def test_first_token_scores_are_the_probabilities_within_epsilon_and_strictly_decreasing_even_when_they_underflow():
    probs = [0.7, 0.2, 0.1]
    scores = relevance_scores(3, probs)
    assert scores == pytest.approx(probs, abs=EPSILON)
    assert scores[0] > scores[1] > scores[2]
    # a confident model: 17 documents whose probabilities underflow to 0.0 (they came back all at 0.0 before)
    confident = [1.0, 1e-30, 1e-300, 5e-324] + [0.0] * 17
    scores = relevance_scores(len(confident), confident)
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)) and 0.0 < scores[-1] < scores[0] <= 1.0
    assert relevance_scores(2, [0.5, 0.5])[0] > relevance_scores(2, [0.5, 0.5])[1]  # equal logits
    assert relevance_scores(3, [0.2]) == rank_relevance(3)  # not one probability per document


def test_window_probabilities_come_from_one_window_that_ranked_every_document():
    from inference.reranker import RerankResult, WindowRecord

    w = WindowRecord(start=0, end=3, docids=("a", "b", "c"), raw=None, order=(2, 0, 1),
                     logprobs=(-1.0, -3.0, -0.5))
    one = RerankResult(qid="q", docids=("c", "a", "b"), scores=(0.6, 0.4, 0.1), windows=(w,))
    assert window_probabilities(one) == pytest.approx([0.6065306, 0.3678794, 0.0497871])
    two = RerankResult(qid="q", docids=("c", "a", "b"), scores=(3, 2, 1), windows=(w, w))
    assert window_probabilities(two) is None  # probabilities of different windows are not comparable
    past_top_k = RerankResult(qid="q", docids=("c", "a", "b", "d"), scores=(1, 0.5, 0.1, -1), windows=(w,))
    assert window_probabilities(past_top_k) is None  # "d" was not in the window


def test_prepare_checks_limits_and_counts_truncations():
    cfg = ServeConfig(max_documents=3, max_document_chars=5, max_query_chars=10)
    ok = prepare(RerankV1Request(query="q", documents=["abc", {"text": "de"}], top_n=9), cfg)
    assert ok.texts == ("abc", "de") and ok.top_n == 2 and ok.truncated == frozenset()
    cut = prepare(RerankV1Request(query="q", documents=["abcdefgh", "x"], truncate=True), cfg)
    assert cut.texts == ("abcde", "x") and cut.originals[0] == "abcdefgh" and cut.truncated == {0}
    v2 = prepare(RerankV2Request(model="m", query="q", documents=["abcdefgh"], max_tokens_per_doc=3), cfg)
    assert v2.texts == ("abcde",) and v2.max_tokens_per_doc == 3
    for body, field in [(RerankV1Request(query=" \t", documents=["a"]), "query"),
                        (RerankV1Request(query="q" * 11, documents=["a"]), "query"),
                        (RerankV1Request(query="q", documents=[]), "documents"),
                        (RerankV1Request(query="q", documents=["a"] * 4), "documents"),
                        (RerankV1Request(query="q", documents=["a", "abcdefgh"]), "documents.1"),
                        (RerankV2Request(model="m", query="q", documents=["abcdefgh"]), "documents.0")]:
        with pytest.raises(InputError) as err:
            prepare(body, cfg)
        assert err.value.field == field and str(err.value).startswith(field)


def test_error_fields_drop_the_body_prefix_and_union_members():
    assert error_field(("body", "documents", 3, "str")) == "documents.3"
    assert error_field(("body", "documents", 3, "TextDocument", "text")) == "documents.3.text"
    assert error_field(("body", "top_n")) == "top_n"
    assert error_field(("body",)) == "body"


def test_the_key_is_a_bearer_token_compared_exactly():
    assert authorized(None, None) and authorized("anything", None)
    assert authorized("Bearer k3y", "k3y") and authorized("bearer k3y", "k3y")
    for header in (None, "", "k3y", "Bearer k3", "Bearer k3y2", "Basic k3y", "Bearer"):
        assert not authorized(header, "k3y"), header


def test_config_refuses_nonsense_limits():
    for kw in ({"max_documents": 0}, {"max_queue": 0}, {"request_timeout": 0}, {"api_key": ""}):
        with pytest.raises(ValueError):
            ServeConfig(**kw)


def test_cli_defaults_to_loopback_and_refuses_what_cannot_serve(monkeypatch, capsys, tmp_path):
    from inference.serve import cli

    args = cli.build_parser().parse_args(["--model", "m"])
    assert args.host == "127.0.0.1" and args.scoring == "generate" and args.api_key_env is None
    monkeypatch.delenv("DEAR_TEST_KEY", raising=False)
    assert cli.main(["--model", str(tmp_path), "--api-key-env", "DEAR_TEST_KEY"]) == 2
    assert "DEAR_TEST_KEY" in capsys.readouterr().err
    assert cli.main(["--model", str(tmp_path / "missing")]) == 2  # no weights: refused before serving
    assert "error" in capsys.readouterr().err


def test_max_tokens_per_doc_is_an_exact_token_limit(tiny_tokenizer):
    """Cohere v2's limit: a document of exactly k tokens is kept whole and not reported as cut; one token
    more is cut to exactly its first k tokens and reported; the limit must be at least 1."""
    import time
    from types import SimpleNamespace

    from pydantic import ValidationError

    from data_prep.schema import Candidate, RerankRequest
    from inference.serve.engine import Job, RerankEngine

    engine = RerankEngine(lambda: None, max_queue=1, request_timeout=1.0)
    engine.reranker = SimpleNamespace(tokenizer=tiny_tokenizer)
    k = 4
    texts = ["alpha beta gamma delta epsilon zeta eta theta iota kappa", "one two three four five six seven"]
    ids = [tiny_tokenizer.encode(t, add_special_tokens=False) for t in texts]
    exact = tiny_tokenizer.decode(ids[0][:k])
    assert len(tiny_tokenizer.encode(exact, add_special_tokens=False)) == k
    longer = tiny_tokenizer.decode(ids[1][: k + 1])
    assert len(tiny_tokenizer.encode(longer, add_special_tokens=False)) == k + 1
    job = Job(key=0, request=RerankRequest(qid="q7", query="the query", candidates=(
        Candidate("a", exact), Candidate("b", longer))), deadline=time.monotonic() + 60, max_tokens_per_doc=k)
    out = engine._cut_tokens(job)
    assert job.cut == {1} and (out.qid, out.query) == ("q7", "the query")
    assert [c.docid for c in out.candidates] == ["a", "b"]
    assert out.candidates[0].text == exact
    assert tiny_tokenizer.encode(out.candidates[1].text, add_special_tokens=False) == ids[1][:k]
    assert RerankV2Request(model="m", query="q", documents=["a"], max_tokens_per_doc=1).max_tokens_per_doc == 1
    with pytest.raises(ValidationError):
        RerankV2Request(model="m", query="q", documents=["a"], max_tokens_per_doc=0)


def test_limits_are_inclusive_and_refusals_say_the_size_and_the_limit():
    """A query, a document list and a document exactly at the server's limit are accepted; one more is refused
    with a message naming the size, the limit and (for documents) the fix."""
    cfg = ServeConfig(max_documents=2, max_document_chars=5, max_query_chars=4)
    ok = prepare(RerankV1Request(query="abcd", documents=["abcde", "x"], top_n=1, return_documents=True), cfg)
    assert ok.query == "abcd" and ok.texts == ("abcde", "x") and ok.truncated == frozenset()
    assert ok.top_n == 1 and ok.return_documents is True
    assert prepare(RerankV1Request(query="q", documents=["a", "b"]), cfg).top_n == 2
    cases = [(RerankV1Request(query="abcde", documents=["a"]), "query: is 5 characters; the limit is 4"),
             (RerankV1Request(query="q", documents=["a", "b", "c"]), "documents: holds 3 documents; the limit is 2"),
             (RerankV1Request(query="q", documents=["abcdef"]),
              "documents.0: is 6 characters; the limit is 5 (send truncate: true to cut it instead)"),
             (RerankV1Request(query=" ", documents=["a"]), "query: must not be empty"),
             (RerankV1Request(query="q", documents=[]), "documents: must hold at least one document")]
    for body, message in cases:
        with pytest.raises(InputError) as err:
            prepare(body, cfg)
        assert str(err.value) == message and err.value.status == 422
    assert error_field(()) == "body" and error_field(("query",)) == "query"
