"""Teacher examples -> windows (and shuffled copies) -> TRL prompt/completion records, split by query.

Every record is rendered by :func:`data_prep.prompts.render_prompt` and :func:`training_record`, the
functions inference uses, and carries ``qid`` and ``docids`` (the candidates in prompt order) so a
record can be traced back. The target of a record is the teacher's ranking restricted to the candidates
the record shows, in the ids the prompt shows them with.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from data_prep.formats import (
    META_PASSAGE_REASONS,
    META_REASONING_ID_BASE,
    META_TEACHER_ORDERED,
    TeacherRecord,
)
from data_prep.prompt_tokens import record_token_ids
from data_prep.prompts import PROMPT_SPEC_FILE, PromptSpec, TokenizerLike, render_prompt, training_record
from data_prep.readers import rankgpt_json
from data_prep.report import PrepReport, length_stats
from data_prep.schema import DataError, RankingExample, RerankRequest
from data_prep.windows import variable_window_plan, window_plan

logger = logging.getLogger(__name__)

OverMaxTokens = Literal["trim", "drop"]
OnError = Literal["fail", "skip"]


@dataclass(frozen=True)
class ListwiseOptions:
    """How examples become records. ``stride`` defaults to half the window (as sliding-window inference)."""

    window: int = 20
    stride: int | None = None
    min_window: int | None = None  # variable window lengths: each window draws a length in [min_window, window]
    shuffle: int = 0  # extra copies of each window with the candidates shuffled (target remapped)
    top_k: int | None = None  # keep only the first k candidates of each example (in prompt order)
    max_tokens: int | None = None  # prompt + completion tokens (needs a tokenizer)
    over_max_tokens: OverMaxTokens = "trim"  # trim: shrink passages evenly; drop: drop the window
    eval_fraction: float = 0.05
    seed: int = 0
    on_error: OnError = "fail"

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("window must be at least 2")
        if self.stride is not None and not 1 <= self.stride <= self.window:
            raise ValueError("stride must be between 1 and window")
        if self.min_window is not None and not 2 <= self.min_window <= self.window:
            raise ValueError("min_window must be between 2 and window")
        if self.shuffle < 0:
            raise ValueError("shuffle must be >= 0")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be in [0, 1)")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")

    @property
    def effective_stride(self) -> int:
        return self.stride if self.stride is not None else max(1, self.window // 2)


@dataclass
class PrepResult:
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    report: PrepReport
    lengths: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    # the held-out queries with their candidates (as the teacher file lists them): what `dear rerank --input`
    # takes to evaluate a model trained on ``train`` on queries it never saw
    eval_requests: list[RerankRequest] = field(default_factory=list)


def target_order(example: RankingExample, shown: Sequence[int]) -> list[int]:
    """0-based positions into ``shown`` (candidate indices in prompt order), in the teacher's order."""
    rank = {d: r for r, d in enumerate(example.ranking)}
    return sorted(range(len(shown)), key=lambda j: rank[example.candidates[shown[j]].docid])


# "[3]", or "passage 3" / "passages 1, 3, and 5": how teachers name passages inside their reasoning
_REF = re.compile(
    r"\[(?P<br>\d+)\]"
    r"|(?P<word>\b[Pp]assages?\s+)(?P<list>\d+(?:(?:\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+)\d+)*)\b"
)


def renumber_references(text: str, src_base: int, new_pos: dict[int, int], id_base: int) -> tuple[str, bool]:
    """Rewrite passage numbers in ``text`` from source positions (``src_base``-based) to the ids a prompt
    shows them with. Returns (text, every reference resolved)."""
    ok = True

    def target(n: int) -> int | None:
        j = new_pos.get(n - src_base)
        return None if j is None else j + id_base

    def number(m: re.Match[str]) -> str:
        nonlocal ok
        t = target(int(m.group(0)))
        if t is None:
            ok = False
            return m.group(0)
        return str(t)

    def ref(m: re.Match[str]) -> str:
        nonlocal ok
        if m.group("br") is not None:
            t = target(int(m.group("br")))
            if t is None:
                ok = False
                return m.group(0)
            return f"[{t}]"
        return m.group("word") + re.sub(r"\d+", number, m.group("list"))

    return _REF.sub(ref, text), ok


def view_reasoning(example: RankingExample, shown: Sequence[int], id_base: int) -> tuple[str | None, bool]:
    """(reasoning for a record showing ``shown``, whether reasoning existed but could not be kept).

    Per-passage reasons (Reason-to-Rank) are rendered for exactly the passages shown, in teacher order,
    with the prompt's ids; a reason that names a passage the record does not show is left out. Free-text
    reasoning is kept only when the record shows every candidate. Passage numbers inside reasoning
    ("[3]", "passages 1 and 3") are renumbered to the positions the prompt shows those passages at.
    """
    src_base = int(example.meta.get(META_REASONING_ID_BASE, 0))
    new_pos = {i: j for j, i in enumerate(shown)}
    reasons = example.meta.get(META_PASSAGE_REASONS)
    if reasons:
        pos = {example.candidates[i].docid: j for j, i in enumerate(shown)}
        lines = []
        for d in example.ranking:
            if d not in pos or d not in reasons:
                continue
            parts = [renumber_references(t, src_base, new_pos, id_base) for t in reasons[d]]
            kept = " ".join(t for t, ok in parts if ok)
            if kept:
                lines.append(f"[{pos[d] + id_base}] {kept}")
        return ("\n".join(lines) or None), False
    if not example.reasoning:
        return None, False
    if len(shown) != len(example.candidates):
        return None, True
    return renumber_references(example.reasoning, src_base, new_pos, id_base)[0], False


# ----------------------------------------------------------------------------------------- rendering


def _prompt_text_len(record: dict[str, Any]) -> tuple[int, int]:
    p, c = record["prompt"], record["completion"]
    if isinstance(p, str):
        return len(p), len(c)
    return sum(len(m["content"]) for m in p), sum(len(m["content"]) for m in c)


def record_token_counts(record: dict[str, Any], tokenizer: TokenizerLike) -> tuple[int, int]:
    """(prompt tokens, prompt + completion tokens) as a causal LM trainer sees them (with BOS/EOS)."""
    prompt_ids, full_ids = record_token_ids(record, tokenizer)
    return len(prompt_ids), len(full_ids)


def render_view(example: RankingExample, shown: Sequence[int], spec: PromptSpec, *,
                tokenizer: TokenizerLike | None = None, max_tokens: int | None = None,
                over_max_tokens: OverMaxTokens = "trim") -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, info) for one view. Raises DataError(reason="over_max_tokens") when it cannot fit."""
    passages = [example.candidates[i].passage() for i in shown]
    order = target_order(example, shown)
    reasoning, reasoning_lost = view_reasoning(example, shown, spec.id_base)
    info: dict[str, Any] = {"trimmed": False, "reasoning_lost": reasoning_lost,
                            "has_reasoning": bool(reasoning)}

    def make(budget: int | None) -> dict[str, Any]:
        prompt = render_prompt(spec, example.query, passages, tokenizer=tokenizer, max_tokens=budget)
        rec = training_record(spec, prompt, order, reasoning)
        return {"qid": example.qid, "docids": [example.candidates[i].docid for i in shown], **rec}

    rec = make(None)
    if tokenizer is None:
        return rec, info
    n_prompt, n_total = record_token_counts(rec, tokenizer)
    if max_tokens is not None and n_total > max_tokens:
        if over_max_tokens == "drop":
            raise DataError(f"{n_total} tokens > --max-tokens {max_tokens}", qid=example.qid,
                            reason="over_max_tokens", fix="raise --max-tokens or use --over-max-tokens trim")
        budget = max_tokens - (n_total - n_prompt)
        for _ in range(6):  # chat templates add a few tokens around the completion: converge on the budget
            if budget < 1:
                break
            rec = make(budget)
            n_prompt, n_total = record_token_counts(rec, tokenizer)
            if n_total <= max_tokens:
                info["trimmed"] = True
                break
            budget -= n_total - max_tokens
        if n_total > max_tokens:
            raise DataError(f"does not fit in --max-tokens {max_tokens} even with passages shrunk",
                            qid=example.qid, reason="over_max_tokens",
                            fix="raise --max-tokens or use a smaller --window")
    info["tokens"] = (n_prompt, n_total)
    return rec, info


def example_views(example: RankingExample, options: ListwiseOptions,
                  rng: random.Random) -> list[tuple[list[int], str]]:
    """(candidate indices in prompt order, kind) for every record an example turns into."""
    base = list(range(len(example.candidates)))
    if options.top_k is not None:  # the first k as the file lists them
        base = base[: options.top_k]
    if example.meta.get(META_TEACHER_ORDERED):
        # The file lists candidates in teacher order: showing them so would teach the identity ranking.
        rng.shuffle(base)
    views: list[tuple[list[int], str]] = []
    if options.min_window is None:
        spans = window_plan(len(base), options.window, options.effective_stride)
    else:
        spans = variable_window_plan(len(base), options.window, options.effective_stride, options.min_window, rng)
    for start, end in spans:
        shown = base[start:end]
        views.append((shown, "window"))
        for _ in range(options.shuffle):
            copy = list(shown)
            for _attempt in range(5):
                rng.shuffle(copy)
                if copy != shown or len(copy) < 2:
                    break
            views.append((copy, "shuffled"))
    return views


# ----------------------------------------------------------------------------------------- building


def split_qids(qids: Sequence[str], eval_fraction: float, seed: int) -> set[str]:
    """The eval qids: a seeded sample of ``round(fraction * n)`` queries (at least one when the fraction is
    positive and there are two or more queries; never all of them)."""
    unique = sorted(set(qids))
    if eval_fraction <= 0 or len(unique) < 2:
        return set()
    k = min(len(unique) - 1, max(1, round(eval_fraction * len(unique))))
    rng = random.Random(f"split:{seed}")
    return set(rng.sample(unique, k))


_OUTPUT_KEY = {"window": "windows", "shuffled": "shuffled_copies"}
# RankGPT JSON of the held-out queries: `dear rerank --input OUT/eval_queries.json` evaluates on them
EVAL_QUERIES_FILE = "eval_queries.json"


def build_listwise(records: Iterable[TeacherRecord], spec: PromptSpec, options: ListwiseOptions, *,
                   tokenizer: TokenizerLike | None = None, source: str | None = None) -> PrepResult:
    """Turn teacher records into train/eval records, counting every input record.

    With ``options.on_error == "fail"`` the first bad record raises its :class:`DataError`; with
    ``"skip"`` it is counted under ``dropped`` by reason and the run goes on.
    """
    if options.max_tokens is not None and tokenizer is None:
        raise ValueError("max_tokens needs a tokenizer")
    report = PrepReport()
    out: list[dict[str, Any]] = []
    groups: list[str] = []  # split key per output record: the source query (windows of one query stay together)
    seen: dict[str, int | None] = {}
    prompt_lens: list[int] = []
    completion_lens: list[int] = []
    total_lens: list[int] = []
    with_reasoning = 0
    first_example: dict[str, RerankRequest] = {}

    def reject(err: DataError, rec: TeacherRecord) -> None:
        if options.on_error == "fail":
            raise err
        report.record_dropped(err.reason, message=str(err), line=rec.line, qid=err.qid)

    for rec in records:
        report.record_read()
        if rec.error is not None or rec.example is None:
            reject(rec.error or DataError("empty record", path=source, line=rec.line, reason="invalid"), rec)
            continue
        ex = rec.example
        if ex.qid in seen:
            first = seen[ex.qid]
            reject(DataError(f"duplicate qid (first seen {'on line ' + str(first) if first else 'earlier'})",
                             path=source, line=rec.line, qid=ex.qid, reason="duplicate_qid",
                             fix="qids must be unique: merge the records or give them distinct qids"), rec)
            continue
        seen[ex.qid] = rec.line
        if ex.reasoning or ex.meta.get(META_PASSAGE_REASONS):
            with_reasoning += 1
        rng = random.Random(f"{options.seed}:{ex.qid}")
        made: list[dict[str, Any]] = []
        drop_reasons: list[str] = []
        for shown, kind in example_views(ex, options, rng):
            try:
                r, info = render_view(ex, shown, spec, tokenizer=tokenizer, max_tokens=options.max_tokens,
                                      over_max_tokens=options.over_max_tokens)
            except DataError as err:
                report.outputs[f"{_OUTPUT_KEY[kind]}_dropped_{err.reason}"] += 1
                drop_reasons.append(err.reason)
                continue
            report.outputs[_OUTPUT_KEY[kind]] += 1
            report.outputs["trimmed"] += int(info["trimmed"])
            report.outputs["reasoning_dropped_partial_view"] += int(info["reasoning_lost"])
            if spec.cot and not info["has_reasoning"]:
                report.outputs["cot_records_without_reasoning"] += 1
            if "tokens" in info:
                n_prompt, n_total = info["tokens"]
                prompt_lens.append(n_prompt)
                completion_lens.append(n_total - n_prompt)
                total_lens.append(n_total)
            else:
                n_prompt, n_completion = _prompt_text_len(r)
                prompt_lens.append(n_prompt)
                completion_lens.append(n_completion)
                total_lens.append(n_prompt + n_completion)
            made.append(r)
        if not made:
            reason = drop_reasons[0] if drop_reasons else "no_output"
            report.record_dropped(reason, message="every window of the record was dropped", line=rec.line,
                                  qid=ex.qid)
            continue
        report.add_repairs(rec.repairs)
        report.record_written()
        out.extend(made)
        source_qid = str(ex.meta.get("source_qid") or ex.qid)
        groups.extend([source_qid] * len(made))
        if source_qid not in first_example:
            first_example[source_qid] = RerankRequest(qid=source_qid, query=ex.query, candidates=ex.candidates)
    report.check()
    report.outputs = type(report.outputs)({k: v for k, v in report.outputs.items() if v})
    if with_reasoning and not spec.cot:
        logger.info("%d teacher records carry reasoning; pass --cot to train on it", with_reasoning)
    eval_groups = split_qids(groups, options.eval_fraction, options.seed)
    train = [r for r, g in zip(out, groups, strict=True) if g not in eval_groups]
    evals = [r for r, g in zip(out, groups, strict=True) if g in eval_groups]
    report.outputs["records"] = len(out)
    lengths = {
        "unit": "tokens" if tokenizer is not None else "chars",
        "prompt": length_stats(prompt_lens),
        "completion": length_stats(completion_lens),
        "total": length_stats(total_lens),
    }
    split = {"seed": options.seed, "eval_fraction": options.eval_fraction,
             "train_queries": len({r["qid"] for r in train}), "eval_queries": len(eval_groups),
             "train_records": len(train), "eval_records": len(evals),
             "teacher_records_with_reasoning": with_reasoning}
    return PrepResult(train=train, eval=evals, report=report, lengths=lengths, split=split,
                      eval_requests=[req for q, req in first_example.items() if q in eval_groups])


# ----------------------------------------------------------------------------------------- writing


def dataset_features(spec: PromptSpec):
    from datasets import Features, List, Value

    text: Any = Value("string")
    if spec.style == "chat":
        text = List({"role": Value("string"), "content": Value("string")})
    return Features({"qid": Value("string"), "docids": List(Value("string")), "prompt": text,
                     "completion": text})


def to_dataset_dict(result: PrepResult, spec: PromptSpec):
    """The train/eval records as a ``datasets.DatasetDict`` with explicit features.

    An empty split is left out (``--eval-fraction 0``): ``datasets`` saves an empty split as a folder it
    cannot load back, so `dear train` would crash inside ``load_from_disk``; a missing eval split means
    "no evaluation" there."""
    from datasets import Dataset, DatasetDict

    features = dataset_features(spec)

    def split(rows: list[dict[str, Any]]) -> Dataset:
        return Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)

    return DatasetDict({name: split(rows) for name, rows in (("train", result.train), ("eval", result.eval))
                        if rows})


def write_outputs(out_dir: str | Path, result: PrepResult, spec: PromptSpec,
                  report_extra: dict[str, Any]) -> dict[str, Path]:
    """Write train.jsonl, eval.jsonl, dataset/, prompt_spec.json, eval_queries.json (when queries are held
    out) and (last) report.json, each atomically."""
    from data_prep.io.atomic import (
        replace_dir_atomic,
        write_json_atomic,
        write_jsonl_atomic,
        write_text_atomic,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "train.jsonl", "eval": out / "eval.jsonl", "dataset": out / "dataset",
             "prompt_spec": out / PROMPT_SPEC_FILE, "report": out / "report.json",
             "eval_queries": out / EVAL_QUERIES_FILE}
    write_jsonl_atomic(paths["train"], result.train)
    write_jsonl_atomic(paths["eval"], result.eval)
    if result.eval_requests:
        write_json_atomic(paths["eval_queries"], rankgpt_json(result.eval_requests))
    else:
        paths["eval_queries"].unlink(missing_ok=True)  # a stale one would not match this split
    dd = to_dataset_dict(result, spec)
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        replace_dir_atomic(paths["dataset"], lambda tmp: dd.save_to_disk(str(tmp)))
    finally:
        if was_enabled:
            enable_progress_bar()
    # same bytes as data_prep.prompts.save_prompt_spec, written atomically
    write_text_atomic(paths["prompt_spec"], json.dumps(spec.to_json(), indent=2) + "\n")
    report = {**report_extra, **result.report.to_json(), "split": result.split, "lengths": result.lengths,
              "prompt_spec": spec.to_json()}
    write_json_atomic(paths["report"], report)
    return paths


def options_json(options: ListwiseOptions) -> dict[str, Any]:
    d = asdict(options)
    d["stride"] = options.effective_stride
    return d
