"""`python -m inference.rerank` for launcher tests, with one fault a test can switch on by environment:

DEAR_TEST_FAIL_RANK=R and DEAR_TEST_FAIL_AFTER=N make rank R raise after writing N queries, as a rank that
hits a CUDA error or a broken node would. Everything else is the shipped entry point, unchanged."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _inject() -> None:
    fail_rank = os.environ.get("DEAR_TEST_FAIL_RANK")
    if fail_rank is None or os.environ.get("RANK") != fail_rank:
        return
    after = int(os.environ.get("DEAR_TEST_FAIL_AFTER", "1"))
    from inference.reranker import ListwiseReranker

    original = ListwiseReranker.iter_rerank

    def failing(self, requests, **kwargs):
        for n, result in enumerate(original(self, requests, **kwargs)):
            if n == after:
                raise RuntimeError(f"injected failure on rank {fail_rank} after {after} queries")
            yield result

    ListwiseReranker.iter_rerank = failing


if __name__ == "__main__":
    _inject()
    from inference.rerank import main

    raise SystemExit(main())
