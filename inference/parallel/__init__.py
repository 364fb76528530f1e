"""Reranking on many processes (one per GPU, on one or many nodes) under torchrun, accelerate or SLURM.

The work is split by query; every rank writes its own part files next to ``--out`` and rank 0 merges them
(:mod:`inference.runfiles`). The ranks coordinate only through the c10d key-value store the launcher
already runs (:mod:`inference.parallel.group`): no collective ever blocks, so a failed rank cannot leave the
others hanging at a barrier. :mod:`inference.parallel.rerank` is the `dear rerank` flow on top of that.
"""

from inference.parallel.group import Group, PeerFailed, launched_world_size, shard

__all__ = ["Group", "PeerFailed", "launched_world_size", "shard"]
