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
loaded in ``warm_up()`` (the pipeline calls it; ``run`` does too when needed). Needs the ``haystack`` extra.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from haystack import Document, component

from inference.integrations.ranking import InputTypeError, check_top_n, load_reranker, rank_texts


@component
class DearRanker:
    """``model``: a loaded ``ListwiseReranker``, or a model folder / Hub id loaded in ``warm_up`` with
    ``**ranking`` (the keyword arguments of ``ListwiseReranker.from_pretrained``). ``top_k``: how many documents
    to return (None: all, reordered)."""

    def __init__(self, model: Any, top_k: int | None = None, **ranking: Any) -> None:
        self.top_k = check_top_n(top_k, "top_k")
        self.model = model
        self.ranking = ranking
        lazy = isinstance(model, (str, os.PathLike))  # a path loads in warm_up, as Haystack components do
        self.reranker: Any = None if lazy else load_reranker(model, **ranking)

    def warm_up(self) -> None:
        """Load the model (once)."""
        if self.reranker is None:
            self.reranker = load_reranker(self.model, **self.ranking)

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
