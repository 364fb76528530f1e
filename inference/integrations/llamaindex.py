"""LlamaIndex: ``DearRerank``, a ``BaseNodePostprocessor`` over the one reranker (in-process).

    from inference.integrations.llamaindex import DearRerank

    postprocessor = DearRerank.from_pretrained("runs/listwise", top_n=3)
    nodes = postprocessor.postprocess_nodes(retrieved_nodes, query_str="how long do fleas live")
    query_engine = index.as_query_engine(node_postprocessors=[postprocessor])

It returns new ``NodeWithScore`` objects, best first (``top_n`` of them; all when None), around the same nodes
(ids, metadata and relationships kept), with ``score`` the relevance in [0, 1] `dear serve` reports. The model
reads each node's ``get_content(metadata_mode=...)`` (``MetadataMode.EMBED`` by default, as LlamaIndex's own
rerankers do; ``MetadataMode.NONE`` for the bare text). ``keep_retrieval_score`` stores the incoming score in
the node's ``metadata["retrieval_score"]`` as ``SentenceTransformerRerank`` does. Needs the ``llamaindex`` extra.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, field_validator
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from inference.integrations.ranking import InputTypeError, load_reranker, rank_texts
from inference.ranking.options import RankingOptions


class DearRerank(BaseNodePostprocessor):
    """``reranker``: a ``RankingOptions`` (checked, then loaded; or :meth:`from_options`), a loaded
    ``ListwiseReranker``, or a model path (the default options; :meth:`from_pretrained` takes others).
    ``top_n``: how many nodes to keep (None: all, reordered)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = Field(exclude=True)
    top_n: int | None = Field(default=None, ge=1)
    metadata_mode: MetadataMode = MetadataMode.EMBED
    keep_retrieval_score: bool = False

    @field_validator("reranker", mode="before")
    @classmethod
    def _load(cls, value: Any) -> Any:
        return load_reranker(value)

    @classmethod
    def from_pretrained(cls, path: str, *, top_n: int | None = None, **kwargs: Any) -> DearRerank:
        """Load the model at ``path``; ``kwargs`` are ``RankingOptions``' fields (``strategy``, ``window``,
        ``top_k``, ``scoring``, ...), plus this class's ``metadata_mode`` and ``keep_retrieval_score``."""
        own = {k: kwargs.pop(k) for k in ("metadata_mode", "keep_retrieval_score") if k in kwargs}
        return cls(reranker=load_reranker(path, **kwargs), top_n=top_n, **own)

    @classmethod
    def from_options(cls, options: RankingOptions, *, top_n: int | None = None, **own: Any) -> DearRerank:
        """The postprocessor over the reranker ``options`` describe (checked before the model loads); ``own``:
        ``metadata_mode``, ``keep_retrieval_score``."""
        return cls(reranker=options, top_n=top_n, **own)

    @classmethod
    def class_name(cls) -> str:
        return "DearRerank"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("query_bundle: missing -- fix: call postprocess_nodes(nodes, query_str=...) "
                             "or pass a QueryBundle")
        for i, n in enumerate(nodes):
            if not isinstance(n, NodeWithScore):
                raise InputTypeError(f"nodes[{i}]", "a NodeWithScore", n,
                                     "wrap each node as NodeWithScore(node=node) (or pass retriever results)")
        texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        order = rank_texts(self.reranker, query_bundle.query_str, texts, top_n=self.top_n,
                           query_field="query_str", text_field="nodes[{}]".format)
        out = []
        for r in order:
            given = nodes[r.index]
            if self.keep_retrieval_score:
                given.node.metadata["retrieval_score"] = given.score
            out.append(NodeWithScore(node=given.node, score=r.score))
        return out
