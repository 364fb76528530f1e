"""A small OpenAI-compatible chat server for the `dear teacher` tests (stdlib only, loopback only).

It answers ``POST /v1/chat/completions`` with a scripted chain-of-thought ranking: the passages of the
RankGPT-style multi-turn prompt (or of a plain one-message prompt) are scored by how many query words they contain (a real, deterministic
relevance signal), the reasoning names each passage's overlap, and the answer ends with
``### Final Reranking: [a] > [b] > ...``. With ``temperature > 0`` each repeated prompt gets a different,
deterministic perturbation of that order, so self-consistency has something to choose between.

Tests script failures by queueing actions: globally (``server.plan``, consumed one per request) or per
query (``server.by_query[text]``, consumed one per request for that query; ``always=True`` entries
repeat). Actions: ``("ok",)``, ``("429", retry_after)``, ``("500",)``, ``("truncated",)`` (a JSON body cut
short), ``("slow", seconds)``, ``("hang",)`` (blocks until :meth:`FakeOpenAI.stop`), ``("garbage",)``
(a 200 reply with no ranking in it), ``("length",)`` (reasoning cut at the token limit),
``("echo_key_401",)`` (a 401 whose message quotes the Authorization
header back, like a careless proxy), ``("order", [0-based order])`` (answer with that order).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PASSAGE_RE = re.compile(r"^\[(\d+)\] (.*)$", re.DOTALL)
_QUERY_RE = re.compile(r"Search Query: (.*?)\. ?\n", re.DOTALL)
_LINE_PASSAGE_RE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
_WORD_RE = re.compile(r"[a-z0-9]+")


def query_of(messages: list[dict[str, str]]) -> str:
    for m in reversed(messages):
        if m["role"] == "user":
            hits = _QUERY_RE.findall(m["content"])
            if hits:
                return hits[-1]
    return ""


def passages_of(messages: list[dict[str, str]]) -> list[tuple[int, str]]:
    out = []
    for m in messages:
        if m["role"] == "user":
            hit = _PASSAGE_RE.match(m["content"])
            if hit:
                out.append((int(hit.group(1)), hit.group(2)))
    if not out and messages:  # a plain prompt (dear-card): all passages in one user message, one a line
        out = [(int(i), text) for i, text in _LINE_PASSAGE_RE.findall(messages[-1]["content"])]
    return out


def overlap_order(query: str, passages: list[tuple[int, str]]) -> tuple[list[int], dict[int, int]]:
    """0-based order of the passages by query-word overlap (ties keep prompt order), and the overlaps."""
    qwords = {w for w in _WORD_RE.findall(query.lower()) if len(w) > 2}
    overlap = {pos: len(qwords & set(_WORD_RE.findall(text.lower()))) for pos, (_, text) in enumerate(passages)}
    order = sorted(range(len(passages)), key=lambda p: (-overlap[p], p))
    return order, overlap


def perturb(order: list[int], k: int) -> list[int]:
    """The k-th deterministic variant of ``order`` (k = 0 is the order itself): k adjacent swaps."""
    out = list(order)
    n = len(out)
    for j in range(k):
        if n > 1:
            i = (3 * j + k) % (n - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def cot_answer(passages: list[tuple[int, str]], order: list[int], overlap: dict[int, int]) -> str:
    base_ids = [pid for pid, _ in passages]
    lines = ["Let me judge each passage against the query step by step."]
    for pos in order:
        lines.append(f"Passage [{base_ids[pos]}] shares {overlap.get(pos, 0)} query terms.")
    lines.append("Passages sharing more query terms are more relevant.")
    lines.append("### Final Reranking: " + " > ".join(f"[{base_ids[p]}]" for p in order))
    return "\n".join(lines)


@dataclass
class Seen:
    """One request as the server received it."""

    body: dict[str, Any]
    authorization: str | None
    query: str
    action: str
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass
class FakeOpenAI:
    plan: deque = field(default_factory=deque)
    by_query: dict[str, deque] = field(default_factory=dict)
    always: dict[str, tuple] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    model: str = "fake-teacher"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._prompt_counts: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    return
                body = json.loads(raw)
                try:
                    fake._handle(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                      raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- behaviour -------------------------------------------------------------------------------
    def requests_for(self, query: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.query == query]

    def _next_action(self, query: str) -> tuple:
        with self._lock:
            if query in self.always:
                return self.always[query]
            q = self.by_query.get(query)
            if q:
                return q.popleft()
            if self.plan:
                return self.plan.popleft()
            return ("ok",)

    def _handle(self, h: Any, body: dict[str, Any]) -> None:
        messages = body["messages"]
        query = query_of(messages)
        action = self._next_action(query)
        with self._lock:
            self.seen.append(Seen(body=body, authorization=h.headers.get("Authorization"), query=query,
                                  action=action[0], at=time.monotonic()))
        kind = action[0]
        if kind == "429":
            h._send(429, {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
                    headers={"Retry-After": str(action[1])})
            return
        if kind == "500":
            h._send(500, {"error": {"message": "internal error", "type": "server_error"}})
            return
        if kind == "echo_key_401":
            h._send(401, {"error": {"message": f"Incorrect API key provided: {h.headers.get('Authorization')}",
                                    "type": "invalid_request_error"}})
            return
        if kind == "hang":
            self._stop.wait(60)
            return
        if kind == "slow":
            time.sleep(action[1])
        passages = passages_of(messages)
        order, overlap = overlap_order(query, passages)
        if kind == "order":
            order = list(action[1])
        elif float(body.get("temperature") or 0) > 0:
            key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
            with self._lock:
                k = self._prompt_counts[key]
                self._prompt_counts[key] += 1
            order = perturb(order, k)
        text = "I cannot decide." if kind == "garbage" else cot_answer(passages, order, overlap)
        finish_reason = "stop"
        if kind == "length":  # the model ran out of completion tokens mid-reasoning
            text, finish_reason = text[: len(text) // 3], "length"
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        completion_tokens = len(text.split())
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        data = json.dumps(payload).encode()
        if kind == "truncated":
            data = data[: len(data) // 2]
        h._send(200, None, raw=data)
