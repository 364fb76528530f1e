"""`dear eval` beyond means: paired significance tests, corrections, costs and per-query pictures.

``scores`` builds the per-query metric table every comparison reads (one query set for all runs), ``stats``
holds the paired tests and corrections (scipy, statsmodels), ``compare`` runs them over runs x metrics,
``efficiency`` reads what `dear rerank` recorded beside a run, ``table`` renders, ``plots`` draws.
scipy, statsmodels and matplotlib come from the ``eval`` extra and are imported only when used.
"""

from __future__ import annotations

from data_prep.schema import DataError

EXTRA_FIX = "pip install 'dear-reranker[eval]'"


def require(*modules: str, what: str) -> None:
    """Import ``modules`` now, so a missing ``eval`` extra is one line before any work, not a traceback."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise DataError(f"{what} needs {name}, which is not installed", reason="missing_extra",
                            fix=EXTRA_FIX) from err
