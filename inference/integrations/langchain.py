"""LangChain: ``DearRerank``, a ``BaseDocumentCompressor`` over the one reranker (in-process).

    from inference.integrations.langchain import DearRerank

    compressor = DearRerank.from_pretrained("runs/listwise", top_n=3)
    docs = compressor.compress_documents(retrieved_docs, query="how long do fleas live")
    docs[0].metadata["relevance_score"]

It returns copies of the given ``Document`` objects, best first (``top_n`` of them; all when None), each with
its ``id``, ``page_content`` and metadata kept and the score in ``metadata["relevance_score"]``, where
LangChain's ``CohereRerank`` writes it (the relevance in [0, 1] `dear serve` reports). Usable wherever a
compressor is, e.g. ``ContextualCompressionRetriever(base_compressor=compressor, base_retriever=...)``.
Needs the ``langchain`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, field_validator

from inference.integrations.ranking import InputTypeError, load_reranker, rank_texts
from inference.ranking.options import RankingOptions


class DearRerank(BaseDocumentCompressor):
    """``reranker``: a ``RankingOptions`` (checked, then loaded; or :meth:`from_options`), a loaded
    ``ListwiseReranker``, or a model path (the default options; :meth:`from_pretrained` takes others).
    ``top_n``: how many documents to keep (None: all, reordered)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reranker: Any
    top_n: int | None = Field(default=None, ge=1)

    @field_validator("reranker", mode="before")
    @classmethod
    def _load(cls, value: Any) -> Any:
        return load_reranker(value)

    @classmethod
    def from_pretrained(cls, path: str, *, top_n: int | None = None, **ranking: Any) -> DearRerank:
        """Load the model at ``path`` with ``**ranking`` (``RankingOptions``' fields: ``strategy``, ``window``,
        ``top_k``, ``scoring``, ...)."""
        return cls(reranker=load_reranker(path, **ranking), top_n=top_n)

    @classmethod
    def from_options(cls, options: RankingOptions, *, top_n: int | None = None) -> DearRerank:
        """The compressor over the reranker ``options`` describe (checked before the model loads)."""
        return cls(reranker=options, top_n=top_n)

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise InputTypeError(f"documents[{i}]", "a langchain_core Document", doc,
                                     "wrap each text as Document(page_content=text)")
        order = rank_texts(self.reranker, query, [d.page_content for d in documents], top_n=self.top_n,
                           text_field="documents[{}].page_content".format)
        return [documents[r.index].model_copy(update={"metadata": {**deepcopy(documents[r.index].metadata),
                                                                   "relevance_score": r.score}})
                for r in order]
