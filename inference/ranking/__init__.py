"""The ranking core: strategies (which windows a query needs, and how their orders fold into a top-k ranking) and
scorers (how one window's prompt becomes an order). The scheduler that runs them is
``inference.reranker.ListwiseReranker``.

- ``strategies``: the ``Strategy`` protocol and ``sliding``, ``single``, ``tdpart``, ``setwise``.
- ``scorers``: the ``Scorer`` protocol and ``generate``, ``first-token``.
"""

from inference.ranking.scorers import FIRST_TOKEN, GENERATE, SCORING_MODES, Scorer, WindowAnswer, make_scorer
from inference.ranking.strategies import (
    SETWISE_SORTS,
    STRATEGIES,
    Setwise,
    Single,
    Sliding,
    Strategy,
    TDPart,
    Window,
    make_strategy,
)

__all__ = ["FIRST_TOKEN", "GENERATE", "SCORING_MODES", "SETWISE_SORTS", "STRATEGIES", "Scorer", "Setwise", "Single",
           "Sliding", "Strategy", "TDPart", "Window", "WindowAnswer", "make_scorer", "make_strategy"]
