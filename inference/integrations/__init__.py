"""In-process adapters that put the one `ListwiseReranker` where users already work (docs/integrations.md).

Each adapter is a thin translation between a framework's objects and :mod:`inference.integrations.ranking`
(texts in, ``(index, score)`` out); none ranks on its own. Each module imports its framework at import time, so
import only the one you use; this package itself imports nothing heavy.

- ``ranking``: the shared part: input checks, rerank requests, results as ``(index, score)``, the reranker's lock.
- ``pyterrier``: ``DearTransformer``, a ``pt.Transformer`` over results frames (the ``pyterrier`` extra).
- ``rerankers``: ``DearRanker``, the ``rerankers`` library's ``BaseRanker`` (the ``rerankers`` extra).
- ``langchain``: ``DearRerank``, a LangChain ``BaseDocumentCompressor`` (the ``langchain`` extra).
- ``llamaindex``: ``DearRerank``, a LlamaIndex ``BaseNodePostprocessor`` (the ``llamaindex`` extra).
- ``haystack``: ``DearRanker``, a Haystack 2 ranker component (the ``haystack`` extra).
- ``mcp_server``: ``dear mcp``, a ``rerank`` tool over stdio with the official MCP SDK (the ``mcp`` extra).
"""
