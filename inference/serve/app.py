"""The FastAPI application: the rerank routes, health and metrics, and JSON error bodies for every failure.

Handlers check a request completely (``schemas.prepare``) before it is queued, then wait on the engine's future
while watching the client: past ``request_timeout`` the answer is 504 and, like a client that disconnects, the
request is cancelled so its windows leave the batch. Nothing a handler raises reaches the client as a trace;
no document text or key is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from data_prep.schema import DataError
from inference.serve.auth import authorized, redact_access_log
from inference.serve.config import ServeConfig
from inference.serve.engine import (
    CANCEL_DISCONNECT,
    CANCEL_TIMEOUT,
    EngineUnavailable,
    QueueFull,
    RerankEngine,
    safe_trace,
)
from inference.serve.metrics import ServeMetrics
from inference.serve.schemas import (
    ApiVersion,
    BilledUnits,
    DocumentOut,
    ErrorBody,
    InputError,
    JinaOrTEIRequest,
    Meta,
    Prepared,
    RerankResponse,
    RerankResultItem,
    RerankV1Request,
    RerankV2Request,
    TEIRankItem,
    TEIRerankRequest,
    Usage,
    error_field,
    json_body_problem,
    prepare,
    prepare_tei,
)
from inference.serve.scores import result_relevance

logger = logging.getLogger(__name__)

RERANK_ROUTES = ("/v1/rerank", "/rerank", "/v2/rerank")
KNOWN_ROUTES = (*RERANK_ROUTES, "/health", "/ready", "/metrics")
DISCONNECT_POLL_S = 0.25
STATUS_CLIENT_CLOSED = 499  # nginx's "client closed request": logged and counted, never seen by the client

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 413, 422, 429, 500, 503, 504)}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _printable(text: str) -> str:
    """Text safe to encode as UTF-8 (a field name or message may quote a client's lone surrogate)."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    message = _printable(message)
    body = {"message": message} if field is None else {"message": message, "field": _printable(field)}
    return JSONResponse(body, status_code=status, headers=headers)


class ServeMiddleware:
    """Pure ASGI (so the route still sees the client's disconnect): checks the key of the rerank routes (401)
    and refuses bodies over the limit (413) before the app parses anything, and counts every rerank response by
    route and status with its latency."""

    def __init__(self, app: Any, *, max_body_bytes: int, metrics: ServeMetrics, api_key: str | None) -> None:
        self.app, self.max_body_bytes, self.metrics, self.api_key = app, max_body_bytes, metrics, api_key

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
        status = {"code": 500}

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if route in RERANK_ROUTES and not authorized(_header(scope, b"authorization"), self.api_key):
                status["code"] = 401  # before the body is read or parsed: nothing of it is looked at
                await _error(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                             headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
            read = await self._read_body(scope, receive)
            if read is None:
                status["code"] = 413
                await _error(413, f"the request body is over {self.max_body_bytes} bytes "
                                  "(the server's --max-body-bytes)")(scope, receive, send)
                return
            replay, body = read
            problem = json_body_problem(body) if route in RERANK_ROUTES and body else None
            if problem is not None:  # duplicate keys, NaN: refused before the app reads the body one way
                status["code"] = problem.status
                await _error(problem.status, str(problem), problem.field)(scope, receive, send)
                return
            await self.app(scope, replay, counting_send)
        finally:
            if route in RERANK_ROUTES:
                self.metrics.requests.labels(route=route, status=str(status["code"])).inc()
                self.metrics.latency.labels(route=route).observe(time.perf_counter() - t0)

    async def _read_body(self, scope: dict[str, Any],
                         receive: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[Any, bytes] | None:
        """The body read whole and a receive that replays it to the app (later receives pass through); None when
        over the limit."""
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first: dict[str, Any] = message  # a disconnect before the body ended
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return first
            return await receive()

        return replay, first.get("body", b"")


def create_app(engine: RerankEngine, config: ServeConfig, metrics: ServeMetrics | None = None) -> FastAPI:
    """The app around a started or not-yet-started ``engine`` (the lifespan starts it and drains it at shutdown)."""
    metrics = metrics or engine.metrics or ServeMetrics()
    engine.metrics = metrics
    redact_access_log()
    metrics.track(engine.queue_depth, engine.in_flight, engine.backend_stats)
    probabilities = config.scoring == "first-token"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if not engine.started:
            engine.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.close)

    app = FastAPI(title="dear serve", version="1",
                  description="Listwise LLM reranking behind the Cohere / Jina rerank API.", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "invalid"}
        # text that cannot be encoded says so first (a ``{text}`` document also fails the ``str`` member)
        first = next((e for e in errors if e.get("type") == "unencodable_text"), first)
        if first.get("type") == "json_invalid":
            return _error(400, "the request body is not valid JSON")
        field = error_field(first.get("loc", ()))
        same = [e for e in errors if error_field(e.get("loc", ())) == field]
        unencodable = [e for e in same if e.get("type") == "unencodable_text"]
        if unencodable:  # a string with a lone surrogate (the str member of ``str | {text}`` says why)
            message = str(unencodable[0].get("msg", "invalid"))
        elif field.startswith("documents.") and len(same) > 1:  # both members of ``str | {text}`` failed
            message = "must be a string or an object with a string 'text'"
        else:
            message = str(first.get("msg", "invalid"))
        more = len(errors) - len(same)
        return _error(422, f"{field}: {message}" + (f" (and {more} more)" if more else ""), field)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s: %s", request.url.path, safe_trace(exc))
        return _error(500, "internal server error")

    async def rerank(request: Request, prepared: Prepared, version: str, model: str | None,
                     tei: TEIRerankRequest | None = None) -> Response:
        request_id = uuid.uuid4().hex
        try:
            job = engine.submit(request_id, prepared.query, prepared.texts,
                                max_tokens_per_doc=prepared.max_tokens_per_doc)
        except QueueFull as err:
            return _error(429, f"the server is busy: {err}; retry later",
                          headers={"Retry-After": str(config.retry_after)})
        except EngineUnavailable as err:
            return _error(503, str(err), headers={"Retry-After": str(config.retry_after)})
        except DataError as err:  # the domain types' own checks (the request models check the same first)
            return _error(422, str(err), err.field)
        fut = asyncio.wrap_future(job.future)
        try:
            while not fut.done():
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    engine.cancel(job, CANCEL_TIMEOUT)
                    break
                await asyncio.wait({fut}, timeout=min(DISCONNECT_POLL_S, remaining))
                if not fut.done() and await request.is_disconnected():
                    engine.cancel(job, CANCEL_DISCONNECT)
                    logger.info("request %s: client disconnected; cancelled", request_id)
                    return Response(status_code=STATUS_CLIENT_CLOSED)
        except asyncio.CancelledError:  # the handler itself was cancelled (the connection went away)
            engine.cancel(job, CANCEL_DISCONNECT)
            raise
        if fut.cancelled() or not fut.done():
            return _error(504, f"the request took longer than the server's --request-timeout "
                               f"({config.request_timeout:g} s)")
        err = fut.exception()
        if isinstance(err, DataError):
            return _error(422, str(err))
        if err is not None:
            logger.error("request %s failed: %s", request_id, safe_trace(err))
            return _error(500, "the engine failed while ranking this request")
        result = fut.result()
        truncated = len(prepared.truncated | job.cut)
        if truncated:
            metrics.truncated.inc(truncated)
        order = [int(d) for d in result.docids]
        scores = result_relevance(result, probabilities=probabilities)
        if tei is not None:  # Text Embeddings Inference: a bare list, every text, best first
            raw = result.scores if tei.raw_scores else scores
            return JSONResponse([TEIRankItem(index=i, score=s, text=prepared.originals[i] if tei.return_text else None)
                                 .model_dump(exclude_none=True) for i, s in zip(order, raw, strict=True)])
        items = [RerankResultItem(index=i, relevance_score=s,
                                  document=DocumentOut(text=prepared.originals[i]) if prepared.return_documents else None)
                 for i, s in zip(order[: prepared.top_n], scores[: prepared.top_n], strict=True)]
        warnings = [f"{truncated} document(s) truncated to the server's limits"] if truncated else []
        tokens = sum(w.prompt_tokens + w.generated_tokens for w in result.windows)
        body = RerankResponse(id=request_id, model=model or config.model_name, results=items,
                              meta=Meta(api_version=ApiVersion(version=version),
                                        billed_units=BilledUnits(search_units=1), warnings=warnings),
                              usage=Usage(total_tokens=tokens))
        return JSONResponse(body.model_dump(exclude_none=True))

    @app.post("/v1/rerank", response_model=RerankResponse, responses=ERRORS, summary="Cohere v1 rerank")
    async def rerank_v1(body: RerankV1Request, request: Request) -> Response:
        return await rerank(request, prepare(body, config), "1", body.model)

    @app.post("/rerank", response_model=RerankResponse | list[TEIRankItem], responses=ERRORS,
              summary="Jina rerank; Text Embeddings Inference's when the body has `texts`")
    async def rerank_jina(body: JinaOrTEIRequest, request: Request) -> Response:
        if isinstance(body, TEIRerankRequest):
            return await rerank(request, prepare_tei(body, config), "1", None, tei=body)
        return await rerank(request, prepare(body, config), "1", body.model)

    @app.post("/v2/rerank", response_model=RerankResponse, responses=ERRORS, summary="Cohere v2 rerank")
    async def rerank_v2(body: RerankV2Request, request: Request) -> Response:
        return await rerank(request, prepare(body, config), "2", body.model)

    @app.get("/health", summary="liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="the model is loaded and the server accepts requests",
             responses={503: {"model": ErrorBody}})
    async def ready() -> Response:
        if engine.ready:
            return JSONResponse({"status": "ready"})
        reason = engine.load_error or ("shutting down" if engine.reranker is not None else "the model is loading")
        return _error(503, reason)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    app.add_middleware(ServeMiddleware, max_body_bytes=config.max_body_bytes, metrics=metrics,
                       api_key=config.api_key)
    return app
