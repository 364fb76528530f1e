"""`RankingOptions`: every option that decides how a listwise model ranks, declared once.

`dear rerank` (``inference.rerank_job.RerankOptions``), `dear serve` (``inference.serve.cli.ServeOptions``) and the
data-parallel entry point (``-m inference.rerank``) extend this dataclass, so their flags, defaults, choices, help
and checks are these; the Python API takes the same object (:meth:`RankingOptions.reranker_kwargs`,
:func:`load_reranker`). :meth:`RankingOptions.check` runs before any model loads (``data_prep.cli_options.checked``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data_prep.cli_options import OptionError, option
from inference.ranking.scorers import GENERATE, SCORING_MODES
from inference.ranking.strategies import (
    HEAPSORT,
    SETWISE,
    SETWISE_SORTS,
    SINGLE,
    SLIDING,
    STRATEGIES,
    TDPART,
    make_strategy,
)

RANKING = "ranking: strategy, windows and scoring"
MODEL = "model"
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("4bit", "8bit")
BACKENDS = ("hf", "vllm")

# the knobs each strategy reads (recorded in a run's settings only for the strategy that reads them)
STRATEGY_KNOBS = {SLIDING: (), SINGLE: (), TDPART: ("depth",), SETWISE: ("depth", "set_size", "setwise_sort")}
STRATEGY_FIXES = {SLIDING: "e.g. --window 20 --stride 10 (DeAR's)", SINGLE: "see `--help`",
                  TDPART: "e.g. --window 20 --depth 10 (a top-10 ranking)",
                  SETWISE: "e.g. --set-size 3 --depth 10 (Zhuang et al.)"}


@dataclass(kw_only=True)
class RankingOptions:
    """The model, the strategy and its knobs, the scoring mode, budgets, batching and the backend."""

    model: str = option(help="listwise adapter folder, merged model folder or Hub id")
    prompt: str | None = option(None, group=RANKING,
                                help="prompt template name, a prompt_spec.json, or a folder with one such as a "
                                "`dear prep` output (default: the model folder's prompt_spec.json, else dear-card)")
    strategy: str = option(SLIDING, choices=STRATEGIES, omit_default=True, group=RANKING,
                           help="how windows become a top-k ranking: sliding (back-to-front windows, RankGPT/DeAR), "
                           "single (the whole top-k in one window), tdpart (top-down partitioning around a pivot, "
                           "parallel windows), setwise (heapsort/bubblesort over small sets, best-of-set only); "
                           "docs/inference.md compares their cost")
    window: int = option(20, group=RANKING, help="passages per window")
    stride: int = option(10, group=RANKING, help="step between windows (sliding; at most --window)")
    top_k: int = option(100, group=RANKING, help="rerank the first K candidates; the rest keep their order")
    depth: int = option(10, group=RANKING, help="tdpart: the pivot's rank in the first window; setwise: how many "
                        "top candidates are sorted (the top DEPTH come out in order)")
    set_size: int = option(3, group=RANKING, help="setwise: passages compared at once (>= 2)")
    setwise_sort: str = option(HEAPSORT, choices=SETWISE_SORTS, group=RANKING, help="setwise: the sort")
    scoring: str = option(GENERATE, choices=SCORING_MODES, omit_default=True, group=RANKING,
                          help="generate: decode each window's ranking (what DeAR adapters are trained for). "
                          "first-token: one forward pass per window, ids ordered by their logit at the first id "
                          "(FIRST; for models trained with --first_token_loss_weight), with per-window id "
                          "probabilities")
    batch_size: int = option(16, group=RANKING, setting="neutral",
                             help="windows decoded (or, first-token, scored) together, across queries")
    max_new_tokens: int | None = option(None, group=RANKING, help="per-window budget (default: what a full ranking "
                                        "of the window needs, plus slack)")
    cot_max_new_tokens: int = option(1024, group=RANKING, help="extra budget for chain-of-thought specs")
    max_prompt_tokens: int | None = option(None, group=RANKING, help="shrink passages evenly when a window prompt "
                                           "is longer (default: the model's context)")
    sample: bool = option(False, group=RANKING, help="sample (DeAR's setting) instead of greedy decoding")
    temperature: float = option(0.7, group=RANKING, help="sampling temperature (> 0; with --sample)")
    top_p: float = option(1.0, group=RANKING, help="nucleus sampling mass in (0, 1] (with --sample)")
    seed: int = option(0, group=RANKING, help="seed of the sampling")
    base_model: str | None = option(None, group=MODEL,
                                    help="base model of an adapter (default: from adapter_config.json)")
    dtype: str = option("auto", group=MODEL, help="weights dtype", choices=DTYPES)
    quantization: str | None = option(None, group=MODEL, help="load the weights quantized", choices=QUANTIZATIONS)
    device: str = option("auto", group=MODEL, help="auto, cpu, cuda, cuda:1 ...", setting="neutral")
    backend: str = option("hf", group=MODEL, help="generation backend", choices=BACKENDS)
    trust_remote_code: bool = option(False, group=MODEL, setting=None,
                                     help="allow model code from the model folder / Hub repo")

    @property
    def ranked_depth(self) -> int:
        """The candidates the listwise model reorders."""
        return self.top_k

    def depth_field(self) -> str:
        """The field that sets :attr:`ranked_depth` (named in its error)."""
        return "top_k"

    def check(self) -> None:
        """Values that can never work, refused before any file is read or any model loads."""
        from data_prep.schema import DataError

        try:  # the strategy checks the knobs it reads (sliding: window and stride; tdpart: window and depth ...)
            make_strategy(self.strategy, window=self.window, stride=self.stride, depth=self.depth,
                          set_size=self.set_size, setwise_sort=self.setwise_sort)
        except ValueError as err:
            raise DataError(str(err), reason="bad_option", fix=STRATEGY_FIXES[self.strategy]) from None
        if self.ranked_depth < 2:
            raise OptionError(self.depth_field(), f"must be >= 2, got {self.ranked_depth}: fewer than two "
                              "candidates leave nothing to rerank", fix="e.g. 100 (two-stage: 30)")
        for name in ("batch_size", "cot_max_new_tokens", "depth"):
            if getattr(self, name) < 1:
                raise OptionError(name, f"must be >= 1, got {getattr(self, name)}", fix="use a positive number")
        for name in ("max_new_tokens", "max_prompt_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f"must be >= 1, got {value}",
                                  fix="use a positive number, or leave it out for the default")
        if self.temperature < 0 or (self.sample and self.temperature == 0):
            raise OptionError("temperature", f"must be > 0 with --sample, got {self.temperature}",
                              fix="e.g. 0.7, or leave out --sample for greedy decoding")
        if not 0 < self.top_p <= 1:
            raise OptionError("top_p", f"must be in (0, 1], got {self.top_p}", fix="e.g. 0.95, or 1 for no cut")

    def ranking_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """``settings`` (from ``settings_of``) without what this ranking does not read: sampling values unless
        sampling, and the knobs of the strategies not chosen."""
        s = dict(settings)
        if not self.sample:
            s["temperature"] = s["top_p"] = None
        used = set(STRATEGY_KNOBS.get(self.strategy, ()))
        for knob in ("depth", "set_size", "setwise_sort"):
            if knob not in used:
                s.pop(knob, None)
        return s

    def reranker_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``ListwiseReranker`` / ``ListwiseReranker.from_pretrained`` for these options."""
        return {"window": self.window, "stride": self.stride, "top_k": self.ranked_depth,
                "batch_size": self.batch_size, "max_new_tokens": self.max_new_tokens,
                "cot_max_new_tokens": self.cot_max_new_tokens, "max_prompt_tokens": self.max_prompt_tokens,
                "do_sample": self.sample, "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed,
                "scoring": self.scoring, "strategy": self.strategy, "depth": self.depth, "set_size": self.set_size,
                "setwise_sort": self.setwise_sort}


def device_map_for(device: str) -> Any:
    """The ``device_map`` of ``--device``: ``auto``, or everything on the one device named."""
    if device == "auto":
        return "auto"
    return {"": "cuda:0" if device == "cuda" else device}


def load_reranker(opts: RankingOptions, device_map: Any = None) -> Any:
    """The listwise reranker ``opts`` describe (model loaded on ``device_map``, default: ``--device``)."""
    from inference.reranker import ListwiseReranker

    return ListwiseReranker.from_pretrained(
        opts.model, base_model=opts.base_model, dtype=opts.dtype, quantization=opts.quantization,
        device_map=device_map_for(opts.device) if device_map is None else device_map, prompt=opts.prompt,
        trust_remote_code=opts.trust_remote_code, backend=opts.backend, **opts.reranker_kwargs())
