"""Reranking with trained or released DeAR adapters, TREC runs out, nDCG in.

``ListwiseReranker`` (sliding windows, batched across queries, early stop, repairs counted),
``PointwiseReranker`` (DeAR stage 1) and ``TwoStageReranker`` (pointwise top-100, listwise top-30), and
``inference.metrics.evaluate`` (trec_eval semantics). Importing this package does not import torch.
"""

from inference.engine import GenerationBackend, HFBackend
from inference.pointwise import PointwiseReranker, PointwiseResult
from inference.reranker import ListwiseReranker, RerankResult, WindowRecord
from inference.two_stage import TwoStageReranker

__all__ = ["GenerationBackend", "HFBackend", "ListwiseReranker", "PointwiseReranker", "PointwiseResult",
           "RerankResult", "TwoStageReranker", "WindowRecord"]
