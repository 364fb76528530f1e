"""The ranking evaluation's options during training, shared by `dear train` (SFT) and `--method grpo`: the fields,
their checks before any model loads, and the callback they describe. One home, so both trainers rank held-out
queries the same way and accept the same strategies (:mod:`inference.ranking`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RankingEvalArguments:
    """nDCG of held-out queries reranked at every evaluation (docs/training.md, ranking evaluation)."""

    ranking_eval_data: str | None = field(
        default=None, metadata={"help": "RankGPT JSON of held-out queries to rerank at every evaluation."})
    ranking_eval_qrels: str | None = field(default=None, metadata={"help": "TREC qrels for ranking_eval_data."})
    ranking_eval_name: str | None = field(default=None, metadata={"help": "Name logged for the held-out set."})
    ranking_eval_queries: int | None = field(default=None, metadata={"help": "Use the first N judged queries."})
    ranking_eval_top_k: int = field(default=20, metadata={"help": "Candidates reranked per query."})
    ranking_eval_window: int = field(default=20, metadata={"help": "Sliding window size."})
    ranking_eval_stride: int = field(default=10, metadata={"help": "Sliding window stride."})
    ranking_eval_batch_size: int = field(default=4, metadata={"help": "Windows generated at once."})
    ranking_eval_max_new_tokens: int | None = field(default=None, metadata={"help": "Generation budget per window."})
    ranking_eval_scoring: str = field(
        default="generate", metadata={"help": "How the ranking eval orders a window: generate (decode the ranking) "
                                               "or first-token (one forward, ids by first-id logit).",
                                      "choices": ["generate", "first-token"]})
    ranking_eval_strategy: str = field(
        default="sliding", metadata={"help": "How the ranking eval turns windows into a ranking: sliding, single, "
                                              "tdpart or setwise (docs/inference.md).",
                                      "choices": ["sliding", "single", "tdpart", "setwise"]})
    ranking_eval_depth: int = field(default=10, metadata={"help": "tdpart's pivot depth / setwise's sorted head."})
    ranking_eval_set_size: int = field(default=3, metadata={"help": "setwise: passages compared at once."})


def eval_strategy_on(training_args: Any) -> bool:
    """Whether the Trainer evaluates at all (the ranking eval runs in its evaluation)."""
    return str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"


def validate_ranking_eval(script: RankingEvalArguments, training_args: Any) -> None:
    """Checks of the ranking-eval options that need no model or data; each error names the fix."""
    from dear_train.config import ConfigError

    if (script.ranking_eval_data is None) != (script.ranking_eval_qrels is None):
        raise ConfigError("ranking evaluation needs both ranking_eval_data and ranking_eval_qrels",
                          fix="set both, or neither")
    if script.ranking_eval_data is None:
        return
    if not eval_strategy_on(training_args):
        raise ConfigError("ranking evaluation is set but eval_strategy is 'no'",
                          fix="set eval_strategy: steps and eval_steps: N")
    if script.ranking_eval_window < 2 or script.ranking_eval_stride < 1:
        raise ConfigError("ranking_eval_window must be >= 2 and ranking_eval_stride >= 1",
                          fix="e.g. window 20, stride 10")
    if script.ranking_eval_window > script.ranking_eval_top_k:
        raise ConfigError(f"ranking_eval_window ({script.ranking_eval_window}) is larger than the data it "
                          f"ranks (ranking_eval_top_k = {script.ranking_eval_top_k} candidates per query)",
                          fix=f"set ranking_eval_window <= {script.ranking_eval_top_k} or raise ranking_eval_top_k")
    from inference.ranking import make_strategy

    try:  # the strategy's own checks of its knobs, with the config's names
        make_strategy(script.ranking_eval_strategy, window=script.ranking_eval_window,
                      stride=min(script.ranking_eval_stride, script.ranking_eval_window),
                      depth=script.ranking_eval_depth, set_size=script.ranking_eval_set_size)
    except ValueError as err:
        raise ConfigError(f"ranking_eval_{err}", fix="see docs/training.md (ranking evaluation)") from None
    if script.ranking_eval_stride >= script.ranking_eval_window:
        raise ConfigError(f"ranking_eval_stride ({script.ranking_eval_stride}) must be smaller than "
                          f"ranking_eval_window ({script.ranking_eval_window})",
                          fix="use stride = window / 2 (DeAR: 20 / 10)")


def ranking_eval_settings(script: RankingEvalArguments) -> dict[str, Any] | None:
    """The ranking-eval settings as the trainers take them, or None when no held-out set is given."""
    if not script.ranking_eval_data:
        return None
    return {
        "data": script.ranking_eval_data, "qrels": script.ranking_eval_qrels, "name": script.ranking_eval_name,
        "queries": script.ranking_eval_queries, "top_k": script.ranking_eval_top_k,
        "window": script.ranking_eval_window, "stride": script.ranking_eval_stride,
        "batch_size": script.ranking_eval_batch_size, "max_new_tokens": script.ranking_eval_max_new_tokens,
        "scoring": script.ranking_eval_scoring, "strategy": script.ranking_eval_strategy,
        "depth": script.ranking_eval_depth, "set_size": script.ranking_eval_set_size,
    }


def ranking_eval_callback(ranking_eval: dict[str, Any], spec: Any, output_dir: str) -> Any:
    """The :class:`dear_train.ranking_eval.RankingEvalCallback` that ``ranking_eval`` (from
    :func:`ranking_eval_settings`) describes, its held-out queries loaded."""
    from dear_train.ranking_eval import RankingEvalCallback, load_held_out

    held = load_held_out(ranking_eval["data"], ranking_eval["qrels"], name=ranking_eval.get("name"),
                         num_queries=ranking_eval.get("queries"), top_k=ranking_eval["top_k"])
    return RankingEvalCallback(
        held, spec, output_dir=output_dir, window=ranking_eval["window"], stride=ranking_eval["stride"],
        batch_size=ranking_eval["batch_size"], max_new_tokens=ranking_eval.get("max_new_tokens"),
        scoring=ranking_eval.get("scoring", "generate"), strategy=ranking_eval.get("strategy", "sliding"),
        depth=ranking_eval.get("depth", 10), set_size=ranking_eval.get("set_size", 3),
    )


def evaluation_setup(training_args: Any, splits: Any, *, eval_split: str | None, train_split: str,
                     ranking_eval: dict[str, Any] | None, spec: Any, dataset_path: str, what: str,
                     stand_in: int) -> tuple[Any, list[Any], Any]:
    """``(eval_dataset, callbacks, ranking_callback)`` for a trainer. A missing or empty eval split (`dear prep
    --eval-fraction 0`) means no ``what`` evaluation, not a crash inside the Trainer ("eval_strategy ... but you
    didn't pass an eval_dataset"); with a ranking eval the first ``stand_in`` training records stand in as the
    eval set, since the Trainer only calls ``on_evaluate`` when there is one."""
    eval_ds = splits.get(eval_split) if eval_split and eval_strategy_on(training_args) else None
    if eval_ds is None and eval_strategy_on(training_args) and not ranking_eval:
        import logging

        from transformers.trainer_utils import IntervalStrategy

        logging.getLogger(__name__).warning("no %r split with records in %s: training without %s evaluation",
                                            eval_split, dataset_path, what)
        training_args.eval_strategy = IntervalStrategy.NO
        training_args.do_eval = False
    if not ranking_eval:
        return eval_ds, [], None
    rank_cb = ranking_eval_callback(ranking_eval, spec, training_args.output_dir)
    if eval_ds is None:
        eval_ds = splits[train_split].select(range(min(stand_in, len(splits[train_split]))))
    return eval_ds, [rank_cb], rank_cb


def model_init_kwargs(training_args: Any, *, revision: str | None, dtype: str,
                      attn_implementation: str | None) -> dict[str, Any]:
    """The keyword arguments the trainers load the model with: the config's ``model_init_kwargs`` plus the
    model options (each only where the config did not set it)."""
    init_kwargs = dict(training_args.model_init_kwargs or {})
    init_kwargs.setdefault("revision", revision)
    init_kwargs.setdefault("dtype", dtype)
    if attn_implementation:
        init_kwargs.setdefault("attn_implementation", attn_implementation)
    return init_kwargs
