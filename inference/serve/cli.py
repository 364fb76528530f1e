"""`dear serve`: the rerank API (Cohere v1/v2, Jina) in front of a listwise reranker, on 127.0.0.1 by default.

    dear serve --model runs/listwise --port 8000
    curl -s localhost:8000/v1/rerank -H 'content-type: application/json' \\
        -d '{"query": "what is a flea", "documents": ["a flea is an insect", "paris is in france"]}'

Needs the `serve` extra (`pip install 'dear-reranker[serve]'`). See docs/serving.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
from dataclasses import dataclass
from typing import Any

from data_prep.cli_options import OptionError, checked, flags_of, option, parse_options
from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_run import CommandError, run_command
from data_prep.schema import DataError
from inference.ranking.options import MODEL, RankingOptions, load_reranker

logger = logging.getLogger(__name__)


LIMITS = "limits"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(kw_only=True)
class ServeOptions(RankingOptions):
    """`dear serve`'s options: the ranking options every ranking command shares (window, strategy, scoring,
    model...; :class:`inference.ranking.options.RankingOptions`, checked before the model loads) plus the
    server's own."""

    host: str = option("127.0.0.1", help="address to bind (default loopback only; 0.0.0.0 for all)", setting=None)
    port: int = option(8000, help="port to listen on", setting=None)
    model_name: str | None = option(None, help="the model name responses report (default: --model)", setting=None)
    threads: int | None = option(None, group=MODEL, help="torch CPU threads (default: torch's)", setting=None)
    max_documents: int = option(100, group=LIMITS, help="documents per request (more: 422)", setting=None)
    max_document_chars: int = option(20_000, group=LIMITS, setting=None,
                                     help="characters per document (more: 422, or cut when the request asks to "
                                     "truncate)")
    max_query_chars: int = option(4_000, group=LIMITS, help="characters per query (more: 422)", setting=None)
    max_body_bytes: int = option(4 * 1024 * 1024, group=LIMITS, help="request body size (more: 413)", setting=None)
    max_queue: int = option(64, group=LIMITS, help="requests waiting for a slot (more: 429)", setting=None)
    request_timeout: float = option(60.0, group=LIMITS, help="seconds per request (more: 504)", setting=None)
    api_key_env: str | None = option(None, group=LIMITS, metavar="NAME", setting=None,
                                     help="require `Authorization: Bearer <key>` with the key read from this "
                                     "environment variable")
    log_level: str = option("info", choices=LOG_LEVELS, help="server log level", setting=None)

    def check(self) -> None:
        """Ranking values as `dear rerank` checks them, then the server's own (:func:`check_serve_options`)."""
        super().check()
        check_serve_options(self)


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(ServeOptions, prog="dear serve", description=__doc__)


MAX_REQUEST_TIMEOUT_S = 86_400.0  # a day: longer is a typo (and overflows the shutdown timer)


def _at_least(args: Any, name: str, low: int, why: str, *, optional: bool = False) -> None:
    value = getattr(args, name)
    if optional and value is None:
        return
    if value < low:
        raise OptionError(name, f"must be >= {low}, got {value}{why}",
                          fix="leave it out for the default" if optional else "use a positive number")


def check_serve_options(args: ServeOptions) -> None:
    """The server's own values that can never work (the ranking ones are :meth:`RankingOptions.check`'s, as in
    `dear rerank`); run by :meth:`ServeOptions.check` before the model loads. Fields by name, shown as flags."""
    if not 0 <= args.port <= 65535:
        raise OptionError("port", f"must be between 0 and 65535, got {args.port}", fix="e.g. 8000")
    _at_least(args, "threads", 1, "", optional=True)
    for name in ("max_documents", "max_document_chars", "max_query_chars", "max_body_bytes", "max_queue"):
        _at_least(args, name, 1, ": every request would be refused")
    timeout = args.request_timeout
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_REQUEST_TIMEOUT_S):
        raise OptionError("request_timeout", f"must be a number of seconds in (0, {MAX_REQUEST_TIMEOUT_S:g}], "
                          f"got {timeout}", fix="e.g. 60")


def api_key_from_env(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name, "")
    if not key.strip():
        raise DataError(f"--api-key-env {name}: the environment variable is unset or empty",
                        fix=f"export {name}=<key> before starting the server")
    return key.strip()


def reranker_loader(args: ServeOptions) -> Any:
    """A function that loads the reranker (run in the engine thread, so /health answers while it loads)."""

    def load() -> Any:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        return load_reranker(args)

    return load


def main(argv: list[str] | None = None) -> int:
    args = parse_options(ServeOptions, argv, prog="dear serve", parser=build_parser())
    return run_command("dear serve", lambda: _run(args), flags=flags_of(ServeOptions))


def _run(args: ServeOptions) -> int:
    checked(args, prog="dear serve")  # --window 1, --port 99999 and the like: refused before anything loads
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        import uvicorn

        from inference.serve.app import create_app
        from inference.serve.auth import redact_access_log
        from inference.serve.config import ServeConfig
        from inference.serve.engine import RerankEngine
        from inference.serve.metrics import ServeMetrics
    except ImportError as err:
        raise CommandError(f"{err.name} is missing; install the serve extra: pip install 'dear-reranker[serve]'") \
            from None
    try:
        config = ServeConfig(model_name=args.model_name or args.model, max_documents=args.max_documents,
                             max_document_chars=args.max_document_chars, max_query_chars=args.max_query_chars,
                             max_body_bytes=args.max_body_bytes, max_queue=args.max_queue,
                             request_timeout=args.request_timeout, api_key=api_key_from_env(args.api_key_env),
                             scoring=args.scoring)
        from inference.models import describe_source

        describe_source(args.model)  # a folder without weights fails now, not after the server is up
    except ValueError as err:  # ServeConfig's own checks (DataError is a ValueError and passes as it is)
        if isinstance(err, DataError):
            raise
        raise DataError(str(err)) from None
    metrics = ServeMetrics()
    engine = RerankEngine(reranker_loader(args), max_queue=config.max_queue,
                          request_timeout=config.request_timeout, metrics=metrics)
    app = create_app(engine, config, metrics)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                           timeout_graceful_shutdown=int(config.request_timeout) + 5))
    redact_access_log()  # after uvicorn configured its loggers: query values (a key sent as ?api_key=) never logged
    engine.on_load_failed = lambda: setattr(server, "should_exit", True)
    logger.info("dear serve: %s on http://%s:%d (docs at /docs)", args.model, args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1") and config.api_key is None:
        logger.warning("dear serve: listening on %s without --api-key-env: anyone who can reach it can use it",
                       args.host)
    stopped_by: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn re-raises the signal after its graceful shutdown:
        signal.signal(sig, lambda s, _frame: stopped_by.append(s))  # handled here, a drained exit is exit 0
    server.run()  # SIGINT/SIGTERM: stop accepting, finish requests in flight, then the engine drains
    if stopped_by:
        logger.info("dear serve: stopped by %s after finishing the requests in flight",
                    signal.Signals(stopped_by[0]).name)
    if engine.load_error:
        raise CommandError(engine.load_error, code=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
