"""Reranking with trained or released DeAR adapters, TREC runs out, nDCG in.

``ListwiseReranker`` (sliding windows, batched across queries, early stop, repairs counted) and
``inference.metrics.evaluate`` (trec_eval semantics). Importing this package does not import torch.
"""

from inference.backends import GenerationBackend, HFBackend
from inference.reranker import ListwiseReranker, RerankResult, WindowRecord

__all__ = ["GenerationBackend", "HFBackend", "ListwiseReranker", "RerankResult", "WindowRecord"]
