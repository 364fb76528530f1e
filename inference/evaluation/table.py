"""The report as text: a terminal table (rich), Markdown, or LaTeX (booktabs), all from the report dict.

Two tables: the runs (means x100 with their marks, judged@10, costs per query), then the tests (difference from
the baseline or the other run, p-value, corrected p-value, queries improved / tied / degraded), and the notes
a reader needs to trust them (test, correction, family size, Monte Carlo error, missing queries).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from inference.evaluation.efficiency import COST_FIELDS, COST_LABELS
from inference.evaluation.scores import JUDGED_AT_10
from inference.evaluation.stats import CORRECTION_NAMES, TEST_NAMES

FORMATS = ("table", "markdown", "latex", "json")
DAGGER = "\u2020"
_SUPERSCRIPT = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖ𐞥ʳˢᵗᵘᵛʷˣʸᶻ")


def fmt_p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _mark(letters: str, style: str) -> str:
    if not letters:
        return ""
    if style == "latex":
        return "$^{" + letters.replace(DAGGER, r"\dagger") + "}$"
    if style == "markdown":
        return f"<sup>{letters}</sup>"
    return letters if letters == DAGGER else letters.translate(_SUPERSCRIPT)


def _cost(value: float | None, field: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if field == "seconds" else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def has_costs(report: Mapping[str, Any]) -> bool:
    return any(r.get("cost") for r in report["runs"].values())


def has_strategies(report: Mapping[str, Any]) -> bool:
    return any((r.get("cost") or {}).get("strategy") for r in report["runs"].values())


def runs_table(report: Mapping[str, Any], style: str = "text") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the runs table; marks in ``style`` (text, markdown, latex)."""
    metrics = report["metrics"]
    comp = report.get("comparison")
    total = report["queries"]
    costs = has_costs(report)
    strategies = has_strategies(report)
    header = ["", "run", "queries", *metrics, JUDGED_AT_10]
    if costs:
        header += (["strategy"] if strategies else []) + [COST_LABELS[f] for f in COST_FIELDS]
    rows = []
    for run in report["runs"].values():
        name = _latex_escape(run["name"]) if style == "latex" else run["name"]
        cells = [run["letter"], name, str(run["queries"]) if run["queries"] == total
                 else f"{run['queries']}/{total}"]
        for m in metrics:
            mark = ""
            if comp is not None:
                mark = run["marks"].get(m, "")
            cells.append(f"{100 * run['metrics'][m]:.2f}{_mark(mark, style)}")
        cells.append(f"{100 * run[JUDGED_AT_10]:.1f}")
        if costs:
            cost = run.get("cost") or {}
            if strategies:
                cells.append(cost.get("strategy") or "-")
            cells += [_cost(cost.get(f), f) for f in COST_FIELDS]
        rows.append(cells)
    if style == "latex":
        header = [_latex_escape(h) for h in header]
    return header, rows


def tests_table(report: Mapping[str, Any], style: str = "text") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the tests: against the baseline one row per run and metric, else per pair."""
    comp = report["comparison"]
    runs = report["runs"]
    fisher = comp["test"] == "fisher" and not comp["exact"]
    corrected = f"p {comp['correction']}" if comp["correction"] != "none" else "p (uncorrected)"
    header = ["run" if comp["baseline"] else "pair", "metric", "diff", "p" + (" ± MC SE" if fisher else ""),
              corrected, "sig", "+/=/-"]
    rows = []
    for p in comp["pairs"]:
        who = runs[p["run"]]["name"] if comp["baseline"] else f"{runs[p['run']]['name']} vs {runs[p['other']]['name']}"
        pv = fmt_p(p["p_value"]) + (f" ± {p['mc_se']:.4f}" if fisher else "")
        rows.append([who, p["metric"], f"{100 * p['difference']:+.2f}", pv, fmt_p(p["p_corrected"]),
                     "yes" if p["significant"] else "no", f"{p['improved']}/{p['tied']}/{p['degraded']}"])
    if style == "latex":
        header = [_latex_escape(h) for h in header]
        rows = [[f"${c}$" if i == 2 else _latex_escape(c) for i, c in enumerate(row)] for row in rows]  # signs
    return header, rows


def notes(report: Mapping[str, Any]) -> list[str]:
    """The sentences under the tables: semantics, test, correction, Monte Carlo error, missing queries."""
    out = [f"means x100 over {report['queries']} judged queries (trec_eval semantics); {JUDGED_AT_10}: share of "
           "the top 10 that has a judgment (low: the figures rest on unjudged passages counted as non-relevant)"]
    if report["common_queries"]:
        out.append(f"--common-queries: only the {report['queries']} judged queries all runs share are scored")
    for run in report["runs"].values():
        if run["missing_queries"]:
            out.append(f"{run['name']} lacks {run['missing_queries']} of the {report['queries']} judged queries: "
                       "it scores 0 on them (trec_eval -c); pass --common-queries to score only shared queries")
    comp = report.get("comparison")
    if comp is not None:
        runs = report["runs"]
        n_metrics = len(report["metrics"])
        pairs = comp["family_size"] // max(n_metrics, 1)
        unit = "run" if comp["baseline"] else "pair"
        family = (f"{comp['family_size']} test{'s' * (comp['family_size'] != 1)} ({pairs} {unit}{'s' * (pairs != 1)} x {n_metrics} "
                  f"metric{'s' * (n_metrics != 1)})")
        how = (f"{TEST_NAMES[comp['test']]}, two-sided, {CORRECTION_NAMES[comp['correction']]} correction over "
               f"{family}, alpha {comp['alpha']}")
        if comp["baseline"]:
            out.append(f"{DAGGER}: significantly different from the baseline {runs[comp['baseline']]['name']} "
                       f"({how})")
        else:
            out.append(f"superscript letters: significantly better than the run with that letter ({how})")
        if comp["test"] == "fisher":
            if comp["exact"]:
                out.append("randomization test: exact (every sign pattern enumerated)")
            else:
                worst = max((p["mc_se"] or 0.0 for p in comp["pairs"]), default=0.0)
                out.append(f"randomization test: {comp['permutations']:,} random sign flips per test, seed "
                           f"{comp['seed']}; Monte Carlo standard error of the p-values up to {worst:.4f}; the smallest p it "
                           f"can give is {fmt_p(1 / (comp['permutations'] + 1))}")
    if comp is not None and comp["pairs"]:
        out.append("+/=/-: queries where the run scores above / equal to / below the "
                   + ("baseline" if comp["baseline"] else "second run of the pair") + "; diff x100")
    if has_costs(report):
        out.append("per query: model calls, prompt and generated tokens, sequential rounds (windows that must "
                   "run one after another), seconds, from the rerank summary and JSONL beside each run "
                   "('-': not recorded)")
    return out


def _latex_escape(text: str) -> str:
    out = "".join({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(ch, ch)
                  for ch in text)
    return out.replace("±", r"$\pm$").replace(DAGGER, r"$^\dagger$")


def markdown(report: Mapping[str, Any]) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" if i >= 2 else "---" for i in range(len(header))) + "|"]
        return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]

    lines = table(*runs_table(report, "markdown"))
    if report.get("comparison") and report["comparison"]["pairs"]:
        lines += [""] + table(*tests_table(report))
    lines += [""] + [f"- {n}" for n in notes(report)]
    return "\n".join(lines) + "\n"


def latex(report: Mapping[str, Any]) -> str:
    """A booktabs table: the runs (marks as superscripts), the tests, the notes as its caption."""
    def tabular(header: list[str], rows: list[list[str]]) -> list[str]:
        return ([r"\begin{tabular}{" + "ll" + "r" * (len(header) - 2) + "}", r"\toprule",
                 " & ".join(header) + r" \\", r"\midrule"]
                + [" & ".join(row) + r" \\" for row in rows] + [r"\bottomrule", r"\end{tabular}"])

    lines = [r"\begin{table}[t]", r"\centering", *tabular(*runs_table(report, "latex"))]
    if report.get("comparison") and report["comparison"]["pairs"]:
        lines += [r"\par\medskip", *tabular(*tests_table(report, "latex"))]
    caption = " ".join(_latex_escape(n) + "." for n in notes(report))
    return "\n".join([*lines, r"\caption{" + caption + "}", r"\end{table}"]) + "\n"


def print_table(report: Mapping[str, Any]) -> None:
    """The terminal form (rich): runs, tests, notes."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=200)  # a file or pipe: no wrapping at 80
    header, rows = runs_table(report, "text")
    table = Table(title=f"qrels {report['qrels']} (trec_eval semantics, x100)")
    for i, h in enumerate(header):
        table.add_column(h, justify="right" if i >= 2 else "left", overflow="fold", no_wrap=i == 1)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    comp = report.get("comparison")
    if comp and comp["pairs"]:
        header, rows = tests_table(report)
        base = report["runs"][comp["baseline"]]["name"] if comp["baseline"] else None
        t2 = Table(title=f"paired tests against {base}" if base else "paired tests, every pair of runs")
        for i, h in enumerate(header):
            t2.add_column(h, justify="right" if i >= 2 else "left", overflow="fold", no_wrap=i == 0)
        for row in rows:
            t2.add_row(*row)
        console.print(t2)
    for n in notes(report):
        console.print(f"- {n}", highlight=False, markup=False)
