"""`dear serve` through a live server on 127.0.0.1 (tiny model): rankings, errors, limits, auth, logs."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import time

import httpx
import pytest
from _serve_helpers import DL19, LiveServer, body, short_requests

from data_prep.readers import read_rankgpt_json
from inference.reranker import ListwiseReranker
from inference.serve.scores import EPSILON

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KW = dict(window=20, stride=10, top_k=100, max_new_tokens=6, batch_size=8)


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", **KW)


def twin(base, **kw):
    """Another reranker over the same loaded model (each server's engine owns its own)."""
    return ListwiseReranker(base.model, base.tokenizer, base.spec, **{**KW, **kw})


def slow_twin(base, **kw):
    """Windows that never finish early: end-of-turn ignored, a long budget (for timeouts and cancellation)."""
    rr = twin(base, max_new_tokens=4000, early_stop=False, **kw)
    rr.backend.eos_ids = set()
    return rr


@pytest.fixture(scope="module")
def dl19(shared_data):
    return read_rankgpt_json(str(shared_data / DL19))


@pytest.fixture(scope="module")
def server(base):
    with LiveServer(twin(base), max_documents=40, max_document_chars=2000, model_name="tiny") as s:
        yield s


def test_a_request_ranks_exactly_as_rerank_batch_whatever_else_is_in_flight(base, server, dl19):
    reqs = short_requests(dl19[:6], 20, 120) + short_requests(dl19[6:7], 30, 120)  # the last takes 2 windows
    expected = twin(base).rerank_batch(reqs)
    routes = ["/v1/rerank", "/rerank", "/v2/rerank"]

    def call(i):
        extra = {"model": "m"} if routes[i % 3] == "/v2/rerank" else {}
        with server.client() as c:
            return c.post(routes[i % 3], json=body(reqs[i], **extra))

    with concurrent.futures.ThreadPoolExecutor(len(reqs)) as pool:
        responses = list(pool.map(call, range(len(reqs))))
    for req, exp, resp in zip(reqs, expected, responses, strict=True):
        assert resp.status_code == 200, resp.text
        data = resp.json()
        got = [r["index"] for r in data["results"]]
        assert [req.candidates[i].docid for i in got] == list(exp.docids)
        scores = [r["relevance_score"] for r in data["results"]]
        assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
        assert len(set(scores)) == len(scores)
    assert responses[-1].json()["usage"]["total_tokens"] == sum(w.prompt_tokens + w.generated_tokens
                                                               for w in expected[-1].windows)


def test_top_n_return_documents_and_document_objects(server):
    docs = ["fleas are insects", {"text": "paris is in france"}, "fleas live a year", {"text": "cats"}]
    with server.client() as c:
        full = c.post("/v1/rerank", json={"query": "flea life", "documents": docs}).json()
        top = c.post("/rerank", json={"query": "flea life", "documents": docs, "top_n": 2,
                                      "return_documents": True}).json()
        over = c.post("/v1/rerank", json={"query": "flea life", "documents": docs, "top_n": 99}).json()
    assert sorted(r["index"] for r in full["results"]) == [0, 1, 2, 3]
    assert "document" not in full["results"][0]
    assert [r["index"] for r in top["results"]] == [r["index"] for r in full["results"][:2]]
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    assert [r["document"]["text"] for r in top["results"]] == [texts[r["index"]] for r in top["results"]]
    assert len(over["results"]) == 4 and full["model"] == "tiny" and full["meta"]["api_version"]["version"] == "1"


@pytest.mark.parametrize(("payload", "status", "field"), [
    ({"query": "  ", "documents": ["a"]}, 422, "query"),
    ({"documents": ["a"]}, 422, "query"),
    ({"query": "q", "documents": []}, 422, "documents"),
    ({"query": "q", "documents": ["a"] * 41}, 422, "documents"),
    ({"query": "q", "documents": ["a", "b" * 2001]}, 422, "documents.1"),
    ({"query": "q", "documents": ["a", 7]}, 422, "documents.1"),
    ({"query": "q", "documents": ["a", {"title": "no text"}]}, 422, "documents.1"),
    ({"query": 5, "documents": ["a"]}, 422, "query"),
    ({"query": "q", "documents": "a"}, 422, "documents"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
    ({"query": "q", "documents": ["a"], "top_n": "2"}, 422, "top_n"),
    ({"query": "q", "documents": ["a"], "return_documents": "yes"}, 422, "return_documents"),
    ({"query": "q" * 4001, "documents": ["a"]}, 422, "query"),
])
def test_bad_input_is_a_422_naming_the_field(server, payload, status, field):
    with server.client() as c:
        resp = c.post("/v1/rerank", json=payload)
    assert resp.status_code == status, resp.text
    data = resp.json()
    assert data["field"] == field and data["message"].startswith(field)
    assert "Traceback" not in resp.text


def test_v2_needs_a_model_and_cuts_documents_to_max_tokens_per_doc(server):
    with server.client() as c:
        missing = c.post("/v2/rerank", json={"query": "q", "documents": ["a"]})
        cut = c.post("/v2/rerank", json={"model": "m", "query": "q", "max_tokens_per_doc": 2,
                                         "documents": ["one two three four five six", "x", "b" * 2500]})
        refused = c.post("/rerank", json={"query": "q", "documents": ["b" * 2500]})
        truncated = c.post("/rerank", json={"query": "q", "documents": ["b" * 2500, "c"], "truncate": True})
    assert missing.status_code == 422 and missing.json()["field"] == "model"
    assert cut.status_code == 200 and cut.json()["meta"]["warnings"] == ["2 document(s) truncated to the server's limits"]
    assert refused.status_code == 422 and refused.json()["field"] == "documents.0"
    assert truncated.status_code == 200 and truncated.json()["meta"]["warnings"]


def test_oversized_bodies_malformed_json_and_unknown_routes_are_json_errors(base):
    with LiveServer(twin(base), max_body_bytes=2000) as s, s.client() as c:
        big = c.post("/v1/rerank", json={"query": "q", "documents": ["x" * 3000]})
        chunked = c.post("/v1/rerank", content=iter([b'{"query": "q", "documents": ["', b"x" * 3000, b'"]}']),
                         headers={"content-type": "application/json"})
        broken = c.post("/v1/rerank", content=b'{"query": ', headers={"content-type": "application/json"})
        nothing = c.get("/nope")
        wrong_method = c.get("/v1/rerank")
        ok = c.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert big.status_code == 413 and "body" in big.json()["message"]
    assert chunked.status_code == 413
    assert broken.status_code == 400 and broken.json()["message"] == "the request body is not valid JSON"
    assert nothing.status_code == 404 and nothing.json()["message"]
    assert wrong_method.status_code == 405 and wrong_method.json()["message"]
    assert ok.status_code == 200


def test_health_ready_metrics_and_docs(server):
    with server.client() as c:
        c.post("/v1/rerank", json={"query": "q", "documents": ["a", "b", "c"]})
        c.post("/v1/rerank", json={"query": "", "documents": ["a"]})
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/ready").json() == {"status": "ready"}
        metrics = c.get("/metrics").text
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
    assert {"/v1/rerank", "/rerank", "/v2/rerank", "/health", "/ready", "/metrics"} <= set(spec["paths"])
    for name in ('dear_serve_requests_total{route="/v1/rerank",status="200"}',
                 'dear_serve_requests_total{route="/v1/rerank",status="422"}', "dear_serve_request_seconds_bucket",
                 "dear_serve_queue_depth", "dear_serve_windows_total", "dear_serve_generated_tokens_total",
                 "dear_serve_prompt_tokens_total", "dear_serve_repairs_total", "dear_serve_in_flight"):
        assert name in metrics, name


def test_the_api_key_is_required_compared_and_never_logged(base, caplog):
    secret, marker = "s3cr3t-key-XYZ", "UNIQUEDOCMARKER"
    caplog.set_level(logging.DEBUG)
    with LiveServer(twin(base), api_key=secret, max_document_chars=100) as s, s.client() as c:
        doc = f"{marker} fleas"
        none = c.post("/v1/rerank", json={"query": "q", "documents": [doc, "b"]})
        wrong = c.post("/v1/rerank", json={"query": "q", "documents": [doc, "b"]},
                       headers={"Authorization": "Bearer nope"})
        good = c.post("/v1/rerank", json={"query": f"{marker} q", "documents": [doc, "b"]},
                      headers={"Authorization": f"Bearer {secret}"})
        bad = c.post("/v1/rerank", json={"query": "q", "documents": [doc * 20]},
                     headers={"Authorization": f"Bearer {secret}"})
        health = c.get("/health")
        unparsed = c.post("/v1/rerank", content=b'{"query": ', headers={"content-type": "application/json"})
    assert none.status_code == 401 and wrong.status_code == 401 and none.json()["message"]
    assert unparsed.status_code == 401  # the key is checked before the body is read
    assert none.headers["www-authenticate"] == "Bearer"
    assert good.status_code == 200 and health.status_code == 200 and bad.status_code == 422
    assert marker not in bad.text
    logged = caplog.text + "".join(json.dumps(r.args, default=str) for r in caplog.records)
    assert secret not in logged and marker not in logged


def test_queue_full_is_a_429_with_retry_after_and_the_rest_are_served(base):
    with LiveServer(twin(base, batch_size=1), max_queue=1) as s:
        def call(i):
            with s.client() as c:
                return c.post("/v1/rerank", json={"query": f"q {i}", "documents": [f"d{j} {i}" for j in range(8)]})

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(call, range(12)))
    codes = [r.status_code for r in responses]
    assert 429 in codes and 200 in codes and set(codes) <= {200, 429}
    for r in responses:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1" and "busy" in r.json()["message"]
        else:
            assert sorted(x["index"] for x in r.json()["results"]) == list(range(8))


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_past_the_timeout_a_504_and_its_windows_leave_the_batch(base):
    rr = slow_twin(base)
    with LiveServer(rr, request_timeout=0.6) as s, s.client() as c:
        t0 = time.monotonic()
        resp = c.post("/v1/rerank", json={"query": "q", "documents": ["a b c", "d e f", "g h"]})
        assert resp.status_code == 504 and "request-timeout" in resp.json()["message"]
        assert time.monotonic() - t0 < 5
        assert _wait(lambda: s.engine.in_flight() == 0)
        steps = rr.backend.stats.decode_steps
        time.sleep(0.3)
        assert rr.backend.stats.decode_steps == steps  # the window left the batch: no more decoding
        assert steps < 4000
        assert 'dear_serve_cancelled_total{reason="timeout"} 1.0' in c.get("/metrics").text


def test_a_client_that_disconnects_frees_its_windows(base):
    rr = slow_twin(base)
    with LiveServer(rr, request_timeout=60) as s:
        with s.client(timeout=0.5) as c, pytest.raises(httpx.ReadTimeout):
            c.post("/v1/rerank", json={"query": "q", "documents": ["a b c", "d e f", "g h"]})
        assert _wait(lambda: s.engine.in_flight() == 0)
        steps = rr.backend.stats.decode_steps
        time.sleep(0.3)
        assert rr.backend.stats.decode_steps == steps and steps < 4000
        with s.client() as c:
            assert 'dear_serve_cancelled_total{reason="disconnect"} 1.0' in c.get("/metrics").text


def test_malformed_requests_never_disturb_a_request_in_flight(base, server, dl19):
    (req,) = short_requests(dl19[10:11], 30, 120)
    (expected,) = twin(base).rerank_batch([req])
    bad = [{"query": "", "documents": ["a"]}, {"query": "q", "documents": [1, 2]}, {"query": "q"},
           {"query": "q", "documents": ["a"], "top_n": -1}, "not an object", [1, 2, 3]]

    def send(i):
        with server.client() as c:
            return c.post("/v1/rerank", json=body(req) if i == 0 else bad[(i - 1) % len(bad)])

    with concurrent.futures.ThreadPoolExecutor(13) as pool:
        responses = list(pool.map(send, range(13)))
    docids = [c.docid for c in req.candidates]
    assert [r["index"] for r in responses[0].json()["results"]] == [docids.index(d) for d in expected.docids]
    assert all(r.status_code == 422 for r in responses[1:])


def test_an_engine_failure_fails_only_the_requests_in_flight_and_the_server_keeps_serving():
    from _infer_helpers import ScriptedBackend

    from data_prep.prompts import get_prompt_spec

    def script(request):
        if "EXPLODE" in request.text:
            raise RuntimeError("backend crashed")
        return " [1] > [0]"

    rr = ListwiseReranker(None, None, get_prompt_spec("dear-card"), backend=ScriptedBackend(script))
    with LiveServer(rr) as s, s.client() as c:
        boom = c.post("/v1/rerank", json={"query": "EXPLODE", "documents": ["a", "b"]})
        after = c.post("/v1/rerank", json={"query": "fine", "documents": ["a", "b"]})
    assert boom.status_code == 500 and boom.json() == {"message": "the engine failed while ranking this request"}
    assert after.status_code == 200 and [r["index"] for r in after.json()["results"]] == [1, 0]


def test_first_token_scores_are_the_models_probabilities_for_one_window(base, dl19):
    rr = twin(base, scoring="first-token")
    (req,) = short_requests(dl19[:1], 8, 120)
    (expected,) = twin(base, scoring="first-token").rerank_batch([req])
    with LiveServer(rr, scoring="first-token") as s, s.client() as c:
        data = c.post("/v1/rerank", json=body(req)).json()
    docids = [c.docid for c in req.candidates]
    assert [r["index"] for r in data["results"]] == [docids.index(d) for d in expected.docids]
    assert all(0.0 <= p <= 1.0 for p in expected.scores), "first-token scores should be probabilities"
    scores = [r["relevance_score"] for r in data["results"]]
    # the probabilities to within EPSILON, plus a rank term that keeps them strictly decreasing (inference.serve.scores)
    assert scores == pytest.approx(list(expected.scores), abs=EPSILON)
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)) and 0 < scores[-1] < scores[0] <= 1


def test_a_request_ranks_as_the_dear_rerank_cli_ranks_the_same_query_and_documents(tiny_model_dir, server, dl19,
                                                                                  tmp_path):
    from data_prep.readers import read_run, write_rankgpt_json
    from inference.cli_rerank import main as rerank_main

    reqs = short_requests(dl19[:2], 20, 120) + short_requests(dl19[2:3], 30, 120)
    write_rankgpt_json(tmp_path / "in.json", reqs)
    assert rerank_main(["--model", str(tiny_model_dir), "--input", str(tmp_path / "in.json"), "--out",
                        str(tmp_path / "run.trec"), "--device", "cpu", "--dtype", "float32", "--window", "20",
                        "--stride", "10", "--max-new-tokens", str(KW["max_new_tokens"]), "--no-progress"]) == 0
    run = read_run(str(tmp_path / "run.trec"))
    with server.client() as c:
        for req in reqs:
            got = [r["index"] for r in c.post("/v1/rerank", json=body(req)).json()["results"]]
            cli_order = [d for d, _ in sorted(run[req.qid], key=lambda pair: -pair[1])]
            assert [req.candidates[i].docid for i in got] == cli_order


def test_concurrent_requests_rank_as_rerank_batch_with_an_oracle_that_really_reorders():
    """The tiny random model barely moves anything; a scripted oracle (ids by the ``rel=`` in each passage,
    windows finishing out of order) makes the server's index mapping and window merging visible."""
    import random

    from _infer_helpers import ScriptedBackend, rank_by_relevance

    from data_prep.prompts import get_prompt_spec
    from data_prep.schema import Candidate, RerankRequest

    def reranker():
        return ListwiseReranker(None, None, get_prompt_spec("dear-card"), backend=ScriptedBackend(rank_by_relevance),
                                window=4, stride=2, batch_size=3)

    rng = random.Random(7)
    docs = [[f"rel={rng.randint(0, 9)} passage {q}-{i}" for i in range(rng.randint(2, 11))] for q in range(12)]
    reqs = [RerankRequest(qid=str(q), query=f"query {q}", candidates=tuple(Candidate(str(i), t) for i, t in
                                                                          enumerate(d))) for q, d in enumerate(docs)]
    expected = [[int(i) for i in r.docids] for r in reranker().rerank_batch(reqs)]
    assert sum(e != sorted(e) for e in expected) >= 10  # the orders really move
    with LiveServer(reranker()) as s:
        def call(q):
            with s.client() as c:
                return c.post("/rerank", json={"query": f"query {q}", "documents": docs[q]}).json()

        with concurrent.futures.ThreadPoolExecutor(len(docs)) as pool:
            got = list(pool.map(call, range(len(docs))))
    assert [[r["index"] for r in g["results"]] for g in got] == expected
