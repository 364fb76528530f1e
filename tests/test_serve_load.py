"""`dear serve` under load (tiny model, loopback, bounded): many clients, a full queue, kill -9, SIGTERM."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import signal
import threading
import time

import httpx
import pytest
from _serve_helpers import DL19, LiveServer, body, free_port, serve_process, short_requests

from data_prep.readers import read_rankgpt_json
from inference.reranker import ListwiseReranker

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
KW = dict(window=20, stride=10, top_k=100, max_new_tokens=4)


@pytest.fixture(scope="module")
def reranker(tiny_model_dir):
    return ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", batch_size=8, **KW)


@pytest.fixture(scope="module")
def workload(shared_data, reranker):
    """DL19 queries with 20 short passages each, and the ranking `rerank_batch` gives each."""
    reqs = short_requests(read_rankgpt_json(str(shared_data / DL19)), 20, 60)
    expected = {r.qid: [r.candidates.index(c) for d in res.docids for c in r.candidates if c.docid == d]
                for r, res in zip(reqs, reranker.rerank_batch(reqs), strict=True)}
    return reqs, expected


def _post(client, req, headers=None):
    return client.post("/v1/rerank", json=body(req), headers=headers)


def _oracle_workload(shared_data):
    """DL19 queries with 20 short passages, each prefixed with its NIST judgment (``rel=N``), ranked by a scripted
    oracle that reads them: orders that really move (the tiny random model leaves most in input order)."""
    from _infer_helpers import ScriptedBackend, rank_by_relevance

    from data_prep.prompts import get_prompt_spec
    from data_prep.readers import read_qrels

    qrels = read_qrels(str(shared_data / "trec-dl19" / "qrels.dl19-passage.txt"))
    reqs = [dataclasses.replace(r, candidates=tuple(
        dataclasses.replace(c, text=f"rel={qrels.get(r.qid, {}).get(c.docid, 0)} {c.text}") for c in r.candidates))
        for r in short_requests(read_rankgpt_json(str(shared_data / DL19)), 20, 60)]

    def make():
        return ListwiseReranker(None, None, get_prompt_spec("dear-card"), backend=ScriptedBackend(rank_by_relevance),
                                window=8, stride=4, batch_size=8)

    expected = {r.qid: [int(d) for d in res.docids]
                for r, res in zip(reqs, make().rerank_batch([_indexed(r) for r in reqs]), strict=True)}
    assert sum(e != list(range(20)) for e in expected.values()) >= 30
    return make(), reqs, expected


@pytest.mark.parametrize("ranker", ["tiny-model", "oracle"])
def test_32_clients_x_8_requests_all_served_once_as_permutations_with_429_when_full(ranker, reranker, workload,
                                                                                    shared_data):
    if ranker == "oracle":
        reranker, reqs, expected = _oracle_workload(shared_data)
    else:
        reqs, expected = workload
    clients, per_client = 32, 8
    with LiveServer(reranker, max_queue=8) as s:
        def client(c):
            got, rejected = [], 0
            with s.client() as http:
                for k in range(per_client):
                    req = reqs[(c * per_client + k) % len(reqs)]
                    while True:
                        resp = _post(http, req)
                        if resp.status_code != 429:
                            break
                        assert resp.headers["retry-after"] == "1"
                        rejected += 1
                        time.sleep(0.05)  # a test client retries sooner than Retry-After asks
                    got.append((req.qid, resp.status_code, resp.json()))
            return got, rejected

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            outcomes = list(pool.map(client, range(clients)))
        wall = time.monotonic() - t0
        metrics = s.client().get("/metrics").text
    answers = [a for got, _ in outcomes for a in got]
    assert len(answers) == clients * per_client
    assert len({data["id"] for _, _, data in answers}) == len(answers)  # none duplicated
    for qid, status, data in answers:
        assert status == 200, data
        order = [r["index"] for r in data["results"]]
        assert sorted(order) == list(range(20)) and order == expected[qid]
    assert sum(r for _, r in outcomes) > 0  # the queue filled up: 429s were answered
    assert f'dear_serve_requests_total{{route="/v1/rerank",status="200"}} {float(len(answers))}' in metrics
    assert wall < 300


def test_kill_9_under_load_gives_connection_errors_never_a_wrong_ranking_and_sigterm_drains(
        tiny_model_dir, workload, reranker, shared_data, subprocess_env, tmp_path):
    reqs, expected = workload
    reqs_long = read_rankgpt_json(str(shared_data / DL19))
    reranker_40 = reranker
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--max-new-tokens", "4", "--batch-size", "8", "--max-queue", "256"]
    stop = threading.Event()
    outcomes: list[tuple[str, str]] = []

    def hammer(c):
        with httpx.Client(base_url=url, timeout=60) as http:
            k = 0
            while not stop.is_set():
                req = reqs[(c * 7 + k) % len(reqs)]
                k += 1
                try:
                    resp = _post(http, req)
                except httpx.TransportError:
                    outcomes.append((req.qid, "connection error"))
                    time.sleep(0.05)
                    continue
                order = [r["index"] for r in resp.json()["results"]] if resp.status_code == 200 else None
                outcomes.append((req.qid, "ok" if order == expected[req.qid] else f"WRONG {resp.status_code}"))

    with serve_process(tiny_model_dir, port, subprocess_env, tmp_path / "a.log", *args) as proc:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(hammer, c) for c in range(6)]
            deadline = time.monotonic() + 60
            while sum(1 for _, o in outcomes if o == "ok") < 12 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            time.sleep(1.0)
            stop.set()
            for f in futures:
                f.result()
    results = [o for _, o in outcomes]
    assert results.count("ok") >= 12 and "connection error" in results
    assert all(o in ("ok", "connection error") for o in results), sorted(set(results))

    secret = "k3y-never-logged-0451"
    env = {**subprocess_env, "DEAR_TEST_SERVE_KEY": secret}
    auth = {"Authorization": f"Bearer {secret}"}
    log = tmp_path / "b.log"
    with serve_process(tiny_model_dir, port, env, log, *args, "--api-key-env", "DEAR_TEST_SERVE_KEY") as proc:
        with httpx.Client(base_url=url, timeout=60, headers=auth) as http:  # a restart serves again
            assert _post(http, reqs[0], headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert [r["index"] for r in _post(http, reqs[0]).json()["results"]] == expected[reqs[0].qid]
            drain_reqs = short_requests(reqs_long[:6], 40, 60)  # 3 windows each: still in flight at SIGTERM
            want = {r.qid: [int(d) for d in res.docids] for r, res in zip(
                drain_reqs, reranker_40.rerank_batch([_indexed(r) for r in drain_reqs]), strict=True)}

            def send(req):
                try:
                    resp = httpx.post(url + "/v1/rerank", json=body(req), headers=auth, timeout=60)
                except httpx.TransportError:
                    return req.qid, None, time.monotonic()
                return req.qid, resp, time.monotonic()

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                futures = [pool.submit(send, r) for r in drain_reqs]
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _busy(http) < 3:
                    time.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                drained = [f.result() for f in futures]
        assert proc.wait(60) == 0
        accepted = [(qid, resp, t) for qid, resp, t in drained if resp is not None]
        assert any(t > signalled for _, _, t in accepted)  # finished after SIGTERM: in flight was drained
        for qid, resp, _ in accepted:
            assert resp.status_code == 200 and [r["index"] for r in resp.json()["results"]] == want[qid]
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
    logged = log.read_text(encoding="utf-8")
    assert "stopped by SIGTERM" in logged and "POST /v1/rerank" in logged  # the server's log was captured
    texts = [reqs[0].query] + [c.text for r in drain_reqs for c in r.candidates if len(c.text) >= 30]
    assert secret not in logged and not [t for t in texts if t in logged]  # no key, query or document text


def _indexed(req):
    """The request as the server builds it (docids are the documents' positions)."""
    return dataclasses.replace(req, candidates=tuple(dataclasses.replace(c, docid=str(i))
                                                     for i, c in enumerate(req.candidates)))


def _busy(http) -> float:
    """Requests queued or in flight, from /metrics."""
    total = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(("dear_serve_in_flight ", "dear_serve_queue_depth ")):
            total += float(line.split()[1])
    return total
