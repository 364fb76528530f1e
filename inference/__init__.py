"""Reranking with trained or released DeAR adapters, TREC runs out, nDCG in."""
