"""PNG charts of a comparison (matplotlib, Agg backend): per-query differences and quality against cost.

``per_query_<metric>.png``: one panel per run, one bar per query, run minus baseline, sorted, green above
zero and red below, the improved / tied / degraded counts in the title. ``quality_vs_cost.png``: the metric
against prompt tokens per query (or seconds, or model calls, whichever every costed run recorded); runs
without recorded costs (first-stage runs) are dashed horizontal lines. Files are written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from data_prep.io.atomic import atomic_file
from inference.evaluation.scores import QueryScores

COST_AXES = (("prompt_tokens", "prompt tokens per query"), ("seconds", "seconds per query"),
             ("model_calls", "model calls per query"))


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
                    names: Mapping[str, str], out_dir: Path) -> str:
    """One panel per run against ``baseline``: sorted per-query differences of ``metric``."""
    import numpy as np

    plt = _pyplot()
    others = [r for r in runs if r != baseline]
    fig, axes = plt.subplots(len(others), 1, figsize=(8, 1.9 * len(others) + 0.6), sharey=True, squeeze=False)
    for ax, run in zip(axes[:, 0], others, strict=True):
        diff = sorted_differences(scores, run, baseline, metric)
        colors = np.where(diff > 0, "#2e7d32", np.where(diff < 0, "#c62828", "#9e9e9e"))
        ax.bar(np.arange(len(diff)), diff, width=0.85, color=colors)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axhline(float(diff.mean()), color="#1565c0", linewidth=1, linestyle="--",
                   label=f"mean {diff.mean():+.3f}")
        up, down = int((diff > 0).sum()), int((diff < 0).sum())
        ax.set_title(f"{names[run]} - {names[baseline]}: {up} improved, {len(diff) - up - down} tied, "
                     f"{down} degraded", fontsize=9, loc="left")
        ax.set_ylabel(f"\u0394 {metric}", fontsize=8)
        ax.set_xticks([])
        ax.set_xlim(-0.6, len(diff) - 0.4)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right", frameon=False)
    axes[-1, 0].set_xlabel(f"queries ({len(scores.qids)}), sorted by difference", fontsize=8)
    fig.tight_layout()
    path = _save(fig, out_dir / f"per_query_{re.sub(r'[^A-Za-z0-9]+', '_', metric)}.png")
    plt.close(fig)
    return path


def cost_axis(costs: Mapping[str, Mapping[str, Any] | None]) -> tuple[str, str] | None:
    """The first cost every costed run recorded (prompt tokens, then seconds, then calls), or None."""
    costed = [c for c in costs.values() if c]
    for key, label in COST_AXES:
        if costed and all(c.get(key) is not None for c in costed):
            return key, label
    return None


def quality_cost_chart(means: Mapping[str, float], costs: Mapping[str, Mapping[str, Any] | None], metric: str,
                       names: Mapping[str, str], out_dir: Path) -> str | None:
    """The metric (x100) against a cost per query; None when no run recorded a cost."""
    axis = cost_axis(costs)
    if axis is None:
        return None
    key, label = axis
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    costed = [r for r in means if costs.get(r)]
    xs = [costs[r][key] for r in costed]  # type: ignore[index]
    ax.scatter(xs, [100 * means[r] for r in costed], s=40, color="#1565c0", zorder=3)
    for r, x in zip(costed, xs, strict=True):
        ax.annotate(names[r], (x, 100 * means[r]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for i, r in enumerate(r for r in means if not costs.get(r)):
        ax.axhline(100 * means[r], color=f"C{(i + 1) % 10}", linestyle="--", linewidth=1,
                   label=f"{names[r]} (no cost recorded)")
    ax.set_xlabel(label)
    ax.set_ylabel(f"{metric} (x100)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if len(costed) < len(means):
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{metric} against {label}", fontsize=10)
    fig.tight_layout()
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
        written.append(per_query_chart(scores, runs, baseline, metric, names, folder))
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
