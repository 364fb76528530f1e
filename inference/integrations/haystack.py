"""Haystack 2: ``DearRanker``, a ranker component over the one reranker (in-process).

    from haystack import Pipeline
    from inference.integrations.haystack import DearRanker

    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store))
    pipe.add_component("ranker", DearRanker("runs/listwise", top_k=3))
    pipe.connect("retriever.documents", "ranker.documents")
    pipe.run({"retriever": {"query": q}, "ranker": {"query": q}})["ranker"]["documents"]

``run(query, documents, top_k)`` returns ``{"documents": [...]}``: copies of the given ``Document`` objects
(``dataclasses.replace``, as Haystack's own rankers do: ``id``, ``content`` and ``meta`` kept), best first,
``top_k`` of them (all when None), with ``score`` the relevance in [0, 1] `dear serve` reports. A model path is
loaded in ``warm_up()`` (the pipeline calls it; ``run`` does too when needed). A ranker built from a model path
or ``RankingOptions`` saves with its pipeline (``Pipeline.dumps()`` / ``loads()``, the YAML Hayhooks serves).
Needs the ``haystack`` extra.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from typing import Any

from haystack import Document, component, default_to_dict
from haystack.core.errors import SerializationError

from inference.integrations.ranking import (
    InputTypeError,
    check_top_n,
    checked_options,
    is_options,
    load_options,
    load_reranker,
    rank_texts,
    ranking_options,
)
from inference.ranking.options import RankingOptions


@component
class DearRanker:
    """``model``: a ``RankingOptions``, or a model folder / Hub id with ``**ranking`` (its fields: ``strategy``,
    ``window``, ``top_k`` (the candidates reranked), ``scoring``, ...), checked here and loaded in ``warm_up``; or
    a loaded ``ListwiseReranker``. ``top_k``: how many documents to return (None: all, reordered)."""

    def __init__(self, model: Any, top_k: int | None = None, **ranking: Any) -> None:
        self.top_k = check_top_n(top_k, "top_k")
        self.reranker: Any = None
        self.options: Any = None
        if is_options(model) and not ranking:  # checked now, loaded in warm_up, as Haystack components do
            self.options = checked_options(model)
        elif isinstance(model, (str, os.PathLike)):
            self.options = ranking_options(model, **ranking)
        else:
            self.reranker = load_reranker(model, **ranking)

    @classmethod
    def from_options(cls, options: RankingOptions, top_k: int | None = None) -> DearRanker:
        """The ranker over the reranker ``options`` describe (checked now, loaded in ``warm_up``)."""
        return cls(options, top_k=top_k)

    def to_dict(self) -> dict[str, Any]:
        """The component as a saved pipeline holds it: the model, ``top_k`` and the ranking options that differ
        from their defaults. A ranker over an already loaded reranker has no such description: refused."""
        if self.options is None:
            raise SerializationError(
                "DearRanker over a loaded reranker cannot be saved with its pipeline -- fix: build it from a "
                "model folder or Hub id (DearRanker('runs/listwise', window=20, ...)) or from a RankingOptions")
        ranking = {f.name: getattr(self.options, f.name) for f in fields(RankingOptions)
                   if f.name != "model" and getattr(self.options, f.name) != f.default}
        return default_to_dict(self, model=str(self.options.model), top_k=self.top_k, **ranking)

    def warm_up(self) -> None:
        """Load the model (once)."""
        if self.reranker is None:
            self.reranker = load_options(self.options)

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """Rerank ``documents`` for ``query``; ``top_k`` overrides the instance's."""
        top_k = check_top_n(top_k, "top_k") if top_k is not None else self.top_k
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise InputTypeError(f"documents[{i}]", "a haystack Document", doc,
                                     "wrap each text as Document(content=text)")
        self.warm_up()
        order = rank_texts(self.reranker, query, [d.content for d in documents], top_n=top_k,
                           text_field="documents[{}].content".format)
        return {"documents": [replace(documents[r.index], score=r.score) for r in order]}
