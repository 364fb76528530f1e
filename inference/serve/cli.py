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
import sys
from typing import Any

from data_prep.cli_options import HelpFormatter, OptionError, flag_message, flags_of
from data_prep.schema import DataError

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dear serve", description=__doc__, allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="listwise adapter folder, merged model folder or Hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--scoring", choices=["generate", "first-token"], default="generate",
                   help="generate a ranking per window (rank-derived scores), or rank by first-token probabilities")
    p.add_argument("--model-name", default=None, help="the model name responses report (default: --model)")
    g = p.add_argument_group("ranking (as `dear rerank`)")
    g.add_argument("--prompt", help="prompt template name or prompt_spec.json (default: the model folder's)")
    g.add_argument("--window", type=int, default=20)
    g.add_argument("--stride", type=int, default=10)
    g.add_argument("--top-k", type=int, default=100, help="rerank the first K documents; the rest keep their order")
    g.add_argument("--batch-size", type=int, default=16, help="windows decoded together, across requests")
    g.add_argument("--max-new-tokens", type=int, default=None, help="per-window budget (default: what a ranking needs)")
    g.add_argument("--cot-max-new-tokens", type=int, default=1024)
    g.add_argument("--max-prompt-tokens", type=int, default=None)
    m = p.add_argument_group("model")
    m.add_argument("--base-model", help="base model of an adapter (default: from adapter_config.json)")
    m.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    m.add_argument("--quantization", choices=["4bit", "8bit"], default=None)
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    m.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    m.add_argument("--trust-remote-code", action="store_true")
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-documents", type=int, default=100, help="documents per request (more: 422)")
    lim.add_argument("--max-document-chars", type=int, default=20_000,
                     help="characters per document (more: 422, or cut when the request asks to truncate)")
    lim.add_argument("--max-query-chars", type=int, default=4_000)
    lim.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="request body size (more: 413)")
    lim.add_argument("--max-queue", type=int, default=64, help="requests waiting for a slot (more: 429)")
    lim.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request (more: 504)")
    lim.add_argument("--api-key-env", metavar="NAME",
                     help="require `Authorization: Bearer <key>` with the key read from this environment variable")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


MAX_REQUEST_TIMEOUT_S = 86_400.0  # a day: longer is a typo (and overflows the shutdown timer)


def _at_least(args: argparse.Namespace, name: str, low: int, why: str, *, optional: bool = False) -> None:
    value = getattr(args, name)
    if optional and value is None:
        return
    if value < low:
        raise OptionError(name, f"must be >= {low}, got {value}{why}",
                          fix="leave it out for the default" if optional else "use a positive number")


def check_serve_options(args: argparse.Namespace) -> None:
    """Values that can never work, refused before the model loads (one rule per limit; fields by their argparse
    name, shown to the user as their flags). The ranking rules are those of `dear rerank`."""
    from data_prep.windows import check_window

    if not 0 <= args.port <= 65535:
        raise OptionError("port", f"must be between 0 and 65535, got {args.port}", fix="e.g. 8000")
    try:
        check_window(args.window, args.stride)  # ValueError naming window/stride
    except ValueError as err:
        raise DataError(str(err), reason="bad_option", fix="e.g. --window 20 --stride 10 (DeAR's)") from None
    if args.top_k < 2:
        raise OptionError("top_k", f"must be >= 2, got {args.top_k}: fewer than two documents leave nothing to "
                          "rerank (every request would come back in its input order)", fix="e.g. 100")
    _at_least(args, "batch_size", 1, "")
    _at_least(args, "cot_max_new_tokens", 1, "")
    _at_least(args, "max_new_tokens", 1, "", optional=True)
    _at_least(args, "max_prompt_tokens", 1, "", optional=True)
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


def reranker_loader(args: argparse.Namespace) -> Any:
    """A function that loads the reranker (run in the engine thread, so /health answers while it loads)."""

    def load() -> Any:
        from inference.cli_rerank import device_map_for
        from inference.reranker import ListwiseReranker

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        extra = {"scoring": args.scoring} if args.scoring != "generate" else {}
        return ListwiseReranker.from_pretrained(
            args.model, base_model=args.base_model, dtype=args.dtype, quantization=args.quantization,
            device_map=device_map_for(args.device), prompt=args.prompt, trust_remote_code=args.trust_remote_code,
            backend=args.backend, window=args.window, stride=args.stride, top_k=args.top_k,
            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            cot_max_new_tokens=args.cot_max_new_tokens, max_prompt_tokens=args.max_prompt_tokens, **extra)

    return load


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_serve_options(args)
    except DataError as err:
        print(f"dear serve: error: {flag_message(err, flags_of(parser))}", file=sys.stderr)
        return 2
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
        print(f"dear serve: error: {err.name} is missing; install the serve extra: "
              "pip install 'dear-reranker[serve]'", file=sys.stderr)
        return 2
    try:
        config = ServeConfig(model_name=args.model_name or args.model, max_documents=args.max_documents,
                             max_document_chars=args.max_document_chars, max_query_chars=args.max_query_chars,
                             max_body_bytes=args.max_body_bytes, max_queue=args.max_queue,
                             request_timeout=args.request_timeout, api_key=api_key_from_env(args.api_key_env),
                             scoring=args.scoring)
        from inference.models import describe_source

        describe_source(args.model)  # a folder without weights fails now, not after the server is up
    except (DataError, ValueError) as err:
        print(f"dear serve: error: {err}", file=sys.stderr)
        return 2
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
        print(f"dear serve: error: {engine.load_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
