"""The ``rerankers`` library: ``DearRanker``, its ``BaseRanker`` over the one reranker.

    from inference.integrations.rerankers import DearRanker

    ranker = DearRanker("runs/listwise")
    results = ranker.rank("how long do fleas live", ["Paris is in France.", "A flea lives a year."], doc_ids=["a", "b"])
    results.top_k(1)[0].doc_id   # "b" (or whatever the model ranks first)

``rank`` returns the library's ``RankedResults`` (``has_scores=True``): one ``Result`` per document, best first,
holding the caller's ``Document`` (``doc_id`` and ``metadata`` kept) with ``rank`` 1-based and ``score`` the
relevance in [0, 1] `dear serve` reports. A remote `dear serve` needs no adapter: the library's own API ranker
works against it (``Reranker("dear", model_type="cohere", api_key=..., url="http://host:8000/v1/rerank")``).
Needs the ``rerankers`` extra.
"""

from __future__ import annotations

from typing import Any

from rerankers.documents import Document
from rerankers.models.ranker import BaseRanker
from rerankers.results import RankedResults, Result

from inference.integrations.ranking import InputTypeError, load_reranker, rank_texts
from inference.ranking.options import RankingOptions


class DearRanker(BaseRanker):
    """``model_name_or_path``: a ``RankingOptions`` (checked, then loaded), a model folder / Hub id with
    ``**ranking`` (its fields: ``strategy``, ``window``, ``top_k``, ``scoring``, ...), or a loaded
    ``ListwiseReranker``."""

    def __init__(self, model_name_or_path: Any, verbose: int = 0, **ranking: Any) -> None:
        self.reranker = load_reranker(model_name_or_path, **ranking)
        self.verbose = verbose
        self.ranking_type = "listwise"

    @classmethod
    def from_options(cls, options: RankingOptions, verbose: int = 0) -> DearRanker:
        """The ranker over the reranker ``options`` describe (checked before the model loads)."""
        return cls(options, verbose=verbose)

    def rank(self, query: str, docs: str | list[str] | Document | list[Document],
             doc_ids: list[str] | list[int] | None = None, metadata: list[dict[str, Any]] | None = None
             ) -> RankedResults:
        """Rank ``docs`` (strings, or the library's ``Document`` objects) for ``query``, best first."""
        documents = _documents(docs, doc_ids, metadata)
        order = rank_texts(self.reranker, query, [d.text for d in documents],
                           text_field="docs[{}].text".format)
        results = [Result(document=documents[r.index], score=r.score, rank=i + 1) for i, r in enumerate(order)]
        return RankedResults(results=results, query=query, has_scores=True)

    def score(self, query: str, doc: str) -> float:
        """Not available: a listwise model orders documents against each other and gives no absolute score."""
        raise NotImplementedError("DearRanker.score: a listwise reranker gives no score to one document on its own "
                                  "-- fix: call rank(query, docs) and read each result's score")


def _documents(docs: Any, doc_ids: Any, metadata: Any) -> list[Document]:
    """The library's documents for ``docs``: strings become ``Document(text, doc_id, metadata)`` (ids default to
    0..n-1); ``Document`` objects are kept as they are unless ``doc_ids`` / ``metadata`` are given for them."""
    if isinstance(docs, (str, Document)):
        docs = [docs]
    if not isinstance(docs, (list, tuple)):
        raise InputTypeError("docs", "a list of strings or rerankers Documents", docs, "pass a list")
    for name, given in (("doc_ids", doc_ids), ("metadata", metadata)):
        if given is not None and len(given) != len(docs):
            raise ValueError(f"{name}: {len(given)} given for {len(docs)} docs -- fix: give one per document")
    out = []
    for i, d in enumerate(docs):
        if isinstance(d, Document):
            if doc_ids is not None:
                d.doc_id = doc_ids[i]
            if metadata is not None:
                d.metadata = metadata[i]
            out.append(d)
        elif isinstance(d, str):
            out.append(Document(d, doc_id=doc_ids[i] if doc_ids is not None else i,
                                metadata=metadata[i] if metadata is not None else {}))
        else:
            raise InputTypeError(f"docs[{i}]", "a string or a rerankers Document", d, "pass each document's text")
    return out
