"""A live `dear serve` app on 127.0.0.1 for tests: uvicorn in a thread (or a subprocess), a free port, bounded."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from data_prep.schema import RerankRequest

DL19 = Path("trec-dl19") / "retrieve_results_dl19_top100.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_requests(requests: list[RerankRequest], n_docs: int, chars: int) -> list[RerankRequest]:
    """DL19 queries with their first ``n_docs`` passages cut to ``chars`` characters (small prompts, fast tests)."""
    return [dataclasses.replace(r, candidates=tuple(dataclasses.replace(c, text=c.passage()[:chars], title=None)
                                                    for c in r.candidates[:n_docs])) for r in requests]


def body(req: RerankRequest, **extra: Any) -> dict[str, Any]:
    return {"query": req.query, "documents": [c.text for c in req.candidates], **extra}


class LiveServer:
    """``create_app(engine, config)`` served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, reranker: Any, **config: Any) -> None:
        import uvicorn

        from inference.serve.app import create_app
        from inference.serve.config import ServeConfig
        from inference.serve.engine import RerankEngine

        self.config = ServeConfig(**config)
        self.engine = RerankEngine(lambda: reranker, max_queue=self.config.max_queue,
                                   request_timeout=self.config.request_timeout)
        self.app = create_app(self.engine, self.config)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server.started and self.engine.ready):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 60), **kw)


@contextlib.contextmanager
def serve_process(model_dir: Path, port: int, env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen]:
    """`python -m inference.serve` in a subprocess, its output in ``log`` (a file: a full pipe would block the
    server); waits for /ready; killed at exit if still running."""
    cmd = [sys.executable, "-m", "inference.serve", "--model", str(model_dir), "--port", str(port),
           "--device", "cpu", "--dtype", "float32", "--threads", "1", *args]
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc, log)
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(encoding='utf-8')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")
