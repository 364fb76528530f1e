"""PNG charts of a comparison (matplotlib, Agg backend): per-query differences and quality against cost.

``per_query_<metric>.png``: one panel per run, one bar per query, run minus baseline, sorted, green above
zero and red below, the improved / tied / degraded counts and the corrected p-value in the title.
``quality_vs_cost.png``: the metric against prompt tokens, sequential rounds and seconds per query (one panel
each, where every costed run recorded it; model calls when none); runs without recorded costs (first-stage runs) are dashed
horizontal lines. Files are written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from data_prep.io.atomic import atomic_file
from inference.evaluation.scores import QueryScores
from inference.evaluation.stats import CORRECTION_NAMES

COST_AXES = (("prompt_tokens", "prompt tokens per query"), ("rounds", "sequential rounds per query"),
             ("seconds", "seconds per query"), ("model_calls", "model calls per query"))


def primary_metric(metrics: Sequence[str]) -> str:
    """nDCG@10 where asked for, else the first metric."""
    return next((m for m in metrics if m.lower() == "ndcg@10"), metrics[0])


def _save(fig: Any, path: Path) -> str:
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    return str(path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def sorted_differences(scores: QueryScores, run: str, baseline: str, metric: str) -> Any:
    """Per-query ``run`` minus ``baseline`` on ``metric``, largest first (the bars of one panel)."""
    import numpy as np

    diff = np.asarray(scores.values[run][metric]) - np.asarray(scores.values[baseline][metric])
    return np.sort(diff)[::-1]


def per_query_chart(scores: QueryScores, runs: Sequence[str], baseline: str, metric: str,
                    names: Mapping[str, str], out_dir: Path, tests: Mapping[str, str] | None = None) -> str:
    """One panel per run against ``baseline``: sorted per-query differences of ``metric``; ``tests`` holds
    each run's test result to print in its title."""
    import numpy as np

    plt = _pyplot()
    others = [r for r in runs if r != baseline]
    fig, axes = plt.subplots(len(others), 1, figsize=(8, 1.9 * len(others) + 0.6), sharey=True, squeeze=False)
    for ax, run in zip(axes[:, 0], others, strict=True):
        diff = sorted_differences(scores, run, baseline, metric)
        x = np.arange(len(diff))
        ax.bar(x, diff, width=0.85, color=np.where(diff > 0, "#2e7d32", "#c62828"))
        tied = diff == 0
        if tied.any():  # a tie has no bar: a grey tick on the axis shows where the tied queries are
            ax.plot(x[tied], diff[tied], linestyle="none", marker="|", markersize=7, color="#757575")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axhline(float(diff.mean()), color="#1565c0", linewidth=1, linestyle="--",
                   label=f"mean {diff.mean():+.3f}")
        up, down = int((diff > 0).sum()), int((diff < 0).sum())
        title = (f"{names[run]} vs {names[baseline]}: {up} improved, {int(tied.sum())} tied, {down} degraded"
                 + (f"; {tests[run]}" if tests and run in tests else ""))
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel(f"\u0394 {metric}", fontsize=8)
        ax.set_xticks([])
        ax.set_xlim(-0.6, len(diff) - 0.4)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right", frameon=False)
    axes[-1, 0].set_xlabel(f"queries ({len(scores.qids)}), sorted by difference; grey ticks: tied", fontsize=8)
    fig.tight_layout()
    path = _save(fig, out_dir / f"per_query_{re.sub(r'[^A-Za-z0-9]+', '_', metric)}.png")
    plt.close(fig)
    return path


def cost_axes(costs: Mapping[str, Mapping[str, Any] | None]) -> list[tuple[str, str]]:
    """The costs every costed run recorded: prompt tokens, rounds and seconds where there, else model calls."""
    costed = [c for c in costs.values() if c]
    found = [(k, label) for k, label in COST_AXES if costed and all(c.get(k) is not None for c in costed)]
    return [a for a in found if a[0] != "model_calls"] or found[:1]


def quality_cost_chart(means: Mapping[str, float], costs: Mapping[str, Mapping[str, Any] | None], metric: str,
                       names: Mapping[str, str], out_dir: Path) -> str | None:
    """The metric (x100) against each recorded cost per query, one panel each; None when no run has a cost."""
    axes_spec = cost_axes(costs)
    if not axes_spec:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(5.2 * len(axes_spec), 4.0), sharey=True, squeeze=False)
    costed = [r for r in means if costs.get(r)]
    free = [r for r in means if not costs.get(r)]
    for ax, (key, label) in zip(axes[0], axes_spec, strict=True):
        xs = [costs[r][key] for r in costed]  # type: ignore[index]
        ax.scatter(xs, [100 * means[r] for r in costed], s=40, color="#1565c0", zorder=3)
        for r, x in zip(costed, xs, strict=True):
            strategy = costs[r].get("strategy")  # type: ignore[union-attr]
            label = f"{names[r]} ({strategy})" if strategy else names[r]
            ax.annotate(label, (x, 100 * means[r]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        for i, r in enumerate(free):
            ax.axhline(100 * means[r], color=f"C{(i + 1) % 10}", linestyle="--", linewidth=1,
                       label=f"{names[r]} (no cost recorded)")
        ax.set_xlabel(label)
        ax.set_xlim(left=0, right=max(xs) * 1.35 if max(xs) > 0 else 1)
        ax.grid(alpha=0.3)
    ys = [100 * v for v in means.values()]
    pad = max((max(ys) - min(ys)) * 0.15, 1.0)
    axes[0, 0].set_ylim(min(ys) - pad, max(ys) + pad)
    axes[0, 0].set_ylabel(f"{metric} (x100)")
    fig.suptitle(f"{metric} against cost per query", fontsize=10)
    rows = 0
    if free:  # below the panels, so it never hides a point
        rows = (len(free) + 1) // 2
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 * rows, 1, 1))
    path = _save(fig, out_dir / "quality_vs_cost.png")
    plt.close(fig)
    return path


def draw(report: Mapping[str, Any], scores: QueryScores, out_dir: str) -> tuple[list[str], list[str]]:
    """(PNG paths written, notes on what could not be drawn) for ``report`` under ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    metric = primary_metric(report["metrics"])
    runs = list(report["runs"])
    names = {r: v["name"] for r, v in report["runs"].items()}
    written, skipped = [], []
    baseline = (report.get("comparison") or {}).get("baseline")
    if baseline is not None:
        corr = report["comparison"]["correction"]
        label = "p (uncorrected)" if corr == "none" else f"{CORRECTION_NAMES[corr]} p"
        tests = {}
        for pair in report["comparison"]["pairs"]:
            if pair["metric"] == metric:
                sig = "significant" if pair["significant"] else "not significant"
                tests[pair["run"]] = f"{label} {pair['p_corrected']:.2g}, {sig}"
        written.append(per_query_chart(scores, runs, baseline, metric, names, folder, tests))
    else:
        skipped.append("the per-query difference chart needs --baseline")
    costs = {r: v.get("cost") for r, v in report["runs"].items()}
    chart = quality_cost_chart({r: v["metrics"][metric] for r, v in report["runs"].items()}, costs, metric,
                               names, folder)
    if chart is None:
        skipped.append("no run has a rerank summary or JSONL beside it, so there is no quality-versus-cost chart")
    else:
        written.append(chart)
    return written, skipped
