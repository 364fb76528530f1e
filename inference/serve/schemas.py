"""Request and response bodies of the rerank API, and the checks a request passes before it is queued.

``/v1/rerank`` and ``/rerank`` take the Cohere v1 / Jina shape (documents as strings or ``{"text": ...}``,
``return_documents``); ``/v2/rerank`` takes Cohere v2's (``model`` required, string documents,
``max_tokens_per_doc``). Unknown fields the SDKs send (``rank_fields``, ``max_chunks_per_doc``, ``priority``)
are accepted and ignored; wrong types are refused (no silent coercion of ``"5"`` to 5).
``/rerank`` also takes Text Embeddings Inference's shape when the body has ``texts`` and no ``documents``
(``TEIRerankRequest``; answered with a bare list of ``TEIRankItem``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
)
from pydantic_core import PydanticCustomError

from data_prep.schema import DataError, check_text
from inference.serve.config import ServeConfig


def _encodable(value: str) -> str:
    """The schema's one text check (``data_prep.schema.check_text``) as a pydantic rule: 422 naming the field."""
    try:
        check_text(value, "text")
    except DataError as err:
        raise PydanticCustomError("unencodable_text", "{message}",
                                  {"message": err.message.removeprefix("text ") + " -- fix: " + (err.fix or "")}) from None
    return value


# Every string of a request: strict (no coercion) and UTF-8 encodable (a lone surrogate never reaches the engine).
Text = Annotated[StrictStr, AfterValidator(_encodable)]


class InputError(ValueError):
    """A request the server refuses; ``field`` is the dotted path of the offending part (``documents.3``)."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: Text


class RerankV1Request(BaseModel):
    """Cohere v1 and Jina: ``documents`` are strings or objects with a ``text`` field."""

    model_config = ConfigDict(extra="ignore")
    model: Text | None = None
    query: Text
    documents: list[Text | TextDocument]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    truncate: StrictBool = Field(default=False, description="cut documents over the server's character limit "
                                 "(counted in meta.warnings) instead of refusing the request")


class RerankV2Request(BaseModel):
    """Cohere v2: ``model`` required, string documents, documents cut to ``max_tokens_per_doc`` tokens."""

    model_config = ConfigDict(extra="ignore")
    model: Text
    query: Text
    documents: list[Text]
    top_n: StrictInt | None = Field(default=None, ge=1)
    max_tokens_per_doc: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False


class TEIRerankRequest(BaseModel):
    """Text Embeddings Inference's rerank body: ``texts`` instead of ``documents``; every text comes back."""

    model_config = ConfigDict(extra="ignore")
    query: Text
    texts: list[Text]
    raw_scores: StrictBool = Field(default=False, description="the scores `dear rerank` writes to its run (n..1, or "
                                   "first-token probabilities) instead of relevance in [0, 1]")
    return_text: StrictBool = False
    truncate: StrictBool = Field(default=False, description="cut texts over the server's character limit instead "
                                 "of refusing the request")


# The body shapes of /rerank: error locations start with the shape's tag, which ``error_field`` drops.
JINA, TEI = "jina", "tei"


def body_shape(body: Any) -> str:
    """``tei`` for a body with ``texts`` and no ``documents``; the Jina / Cohere v1 shape otherwise."""
    return TEI if isinstance(body, dict) and "texts" in body and "documents" not in body else JINA


JinaOrTEIRequest = Annotated[Annotated[RerankV1Request, Tag(JINA)] | Annotated[TEIRerankRequest, Tag(TEI)],
                             Discriminator(body_shape)]


class TEIRankItem(BaseModel):
    index: int
    score: float
    text: str | None = None


class DocumentOut(BaseModel):
    text: str


class RerankResultItem(BaseModel):
    index: int
    relevance_score: float
    document: DocumentOut | None = None


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits
    warnings: list[str] = []


class Usage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResultItem]
    meta: Meta
    usage: Usage


class ErrorBody(BaseModel):
    """Every error: a one-line ``message``; ``field`` names the part of the request at fault when there is one."""

    message: str
    field: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A checked request: texts as the model sees them, and what was done to get there."""

    query: str
    texts: tuple[str, ...]
    originals: tuple[str, ...]  # the texts returned with return_documents (as sent)
    top_n: int
    return_documents: bool
    truncated: frozenset[int]  # indices of documents cut to the character limit
    max_tokens_per_doc: int | None = None


def prepare(body: RerankV1Request | RerankV2Request, config: ServeConfig) -> Prepared:
    """Check a parsed body against the server's limits (each refusal names its field)."""
    if not body.query.strip():
        raise InputError("query", "must not be empty")
    if len(body.query) > config.max_query_chars:
        raise InputError("query", f"is {len(body.query)} characters; the limit is {config.max_query_chars}")
    if not body.documents:
        raise InputError("documents", "must hold at least one document")
    if len(body.documents) > config.max_documents:
        raise InputError("documents", f"holds {len(body.documents)} documents; the limit is {config.max_documents}")
    originals = tuple(d if isinstance(d, str) else d.text for d in body.documents)
    truncate = body.truncate if isinstance(body, RerankV1Request) else body.max_tokens_per_doc is not None
    texts, truncated = [], set()
    for i, text in enumerate(originals):
        if len(text) > config.max_document_chars:
            if not truncate:
                raise InputError(f"documents.{i}", f"is {len(text)} characters; the limit is "
                                 f"{config.max_document_chars} (send truncate: true to cut it instead)")
            text = text[: config.max_document_chars]
            truncated.add(i)
        texts.append(text)
    top_n = len(originals) if body.top_n is None else min(body.top_n, len(originals))
    return Prepared(query=body.query, texts=tuple(texts), originals=originals, top_n=top_n,
                    return_documents=body.return_documents, truncated=frozenset(truncated),
                    max_tokens_per_doc=body.max_tokens_per_doc if isinstance(body, RerankV2Request) else None)


def prepare_tei(body: TEIRerankRequest, config: ServeConfig) -> Prepared:
    """:func:`prepare` for the TEI shape (the same checks; refusals name ``texts``)."""
    as_v1 = RerankV1Request.model_construct(query=body.query, documents=list(body.texts), top_n=None,
                                            return_documents=body.return_text, truncate=body.truncate)
    try:
        return prepare(as_v1, config)
    except InputError as err:
        raise InputError(err.field.replace("documents", "texts", 1),
                         err.message.replace("documents", "texts").replace("document", "text"), err.status) from None


def error_field(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a dotted field name, without FastAPI's ``body`` prefix."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    if parts and parts[0] in (JINA, TEI):  # /rerank's body shape
        parts = parts[1:]
    # a union of str | {text} reports which member failed ("documents.0.str"); the index is the field
    if len(parts) >= 3 and parts[0] == "documents" and (
            parts[2] in ("str", "TextDocument") or parts[2].startswith("function-after[")):
        parts = parts[:2] + parts[3:]
    return ".".join(parts) or "body"


class _DuplicateKey(ValueError):
    pass


class _NotJsonConstant(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise _NotJsonConstant(name)


def json_body_problem(body: bytes) -> InputError | None:
    """What a JSON parser that keeps the last of duplicate keys would hide: an object holding a key twice (422:
    which one the client meant is unknown, so the request is refused rather than silently read one way), and
    ``NaN``/``Infinity``, which are not JSON (400). None when the body is fine, or is not JSON at all (the
    app's own parser answers that with 400)."""
    try:
        json.loads(body, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _DuplicateKey as err:
        key = ascii(str(err.args[0]))
        return InputError(str(err.args[0]), f"the key {key} appears twice in one JSON object; send each key once")
    except _NotJsonConstant as err:
        return InputError("body", f"{err.args[0]} is not valid JSON (RFC 8259 has no NaN or Infinity); send a number "
                                  "or leave the field out", status=400)
    except (ValueError, RecursionError):
        return None
    return None
