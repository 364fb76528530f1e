"""`dear serve`: the Cohere/Jina rerank API in front of a listwise reranker, batching many clients together.

- ``config``: the limits and settings a server runs with (``ServeConfig``).
- ``schemas``: request and response bodies (Cohere v1 / Jina, Cohere v2) and input checks.
- ``scores``: a ranking to ``relevance_score`` in [0, 1].
- ``engine``: the one thread that owns the model and feeds ``ListwiseReranker.iter_feed`` from a bounded queue.
- ``metrics``: Prometheus counters and histograms.
- ``auth``: the optional bearer key.
- ``app``: the FastAPI application (routes, error bodies, body-size limit).
- ``cli``: ``dear serve`` / ``python -m inference.serve`` (uvicorn).

Importing this package imports neither torch nor FastAPI; ``app`` needs the ``serve`` extra.
"""
