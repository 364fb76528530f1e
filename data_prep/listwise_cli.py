"""`dear prep listwise`: teacher rankings -> listwise SFT records (JSONL + datasets folder + report)."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from data_prep.cli_options import HelpFormatter, flag_message, flags_of, os_error_line
from data_prep.formats import FORMATS, REGISTRY
from data_prep.prompts import PROMPT_SPECS
from data_prep.schema import DataError

FORMAT_CHOICES = ("auto", *FORMATS)


def _formats_help() -> str:
    """One entry per registered format, its one-line description wrapped under the name."""
    return "\n".join("\n".join(textwrap.wrap(fmt.description, width=106, initial_indent=f"  {name:<16}",
                                             subsequent_indent=" " * 18, break_long_words=False))
                     for name, fmt in REGISTRY.items())


EPILOG = f"""\
formats (--format auto detects them and logs which it chose):
{_formats_help()}

outputs in --out: train.jsonl, eval.jsonl, dataset/ (datasets.DatasetDict train/eval; no eval split with
--eval-fraction 0), prompt_spec.json, eval_queries.json (the held-out queries' candidates as RankGPT JSON, for
`dear rerank --input`), report.json (read = written + dropped, repairs, drops by reason, lengths, options).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False,
        prog="dear prep listwise", description=__doc__, epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--teacher", required=True, metavar="FILE", help="teacher outputs (.json/.jsonl, .gz ok)")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="teacher format (default: auto)")
    p.add_argument("--qrels", metavar="QRELS", help="TREC qrels: judgments become the teacher (--format qrels)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--prompt", default="dear-card", choices=sorted(PROMPT_SPECS),
                   help="prompt template (default: dear-card, the released DeAR adapter's prompt)")
    p.add_argument("--passage-length", type=int, default=None, metavar="N",
                   help="cut each passage to N units of the template (characters for dear-card, words for "
                        "the chat templates; default 300); saved in prompt_spec.json so inference matches")
    p.add_argument("--window", type=int, default=20, help="passages per record; longer lists become windows")
    p.add_argument("--stride", type=int, default=None, help="step between windows (default: window // 2)")
    p.add_argument("--min-window", type=int, default=None, metavar="N",
                   help="variable window lengths: each window draws its length in [N, --window]")
    p.add_argument("--shuffle", type=int, default=0, metavar="K",
                   help="add K copies of each window with the candidates shuffled (target remapped)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="use only the first K candidates as the file lists them")
    p.add_argument("--cot", action=argparse.BooleanOptionalAction, default=False,
                   help="chain-of-thought targets: the teacher's reasoning, then the ranking (default: --no-cot)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer folder: token lengths and --max-tokens")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="limit on prompt + completion tokens (needs --tokenizer)")
    p.add_argument("--over-max-tokens", choices=("trim", "drop"), default="trim",
                   help="records over --max-tokens: shrink passages evenly (trim) or drop them")
    p.add_argument("--eval-fraction", type=float, default=0.05, metavar="F",
                   help="share of queries held out for eval (split by qid; default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, shuffles and variable windows")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="bad input: stop naming file, line, qid and fix (fail), or count it and go on (skip)")
    p.add_argument("--response-id-base", type=int, choices=(0, 1), default=1,
                   help="--format responses: ids in the raw responses start at 0 or 1 (default 1)")
    return p


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    if not Path(path).exists():
        raise DataError("tokenizer folder not found", path=path, fix="pass a local tokenizer folder")
    return AutoTokenizer.from_pretrained(path)


def _summary(report: dict[str, Any], out: Path, elapsed: float) -> str:
    rec = report["records"]
    lines = [
        f"dear prep listwise: {rec['read']} teacher records read ({report['format']}), {rec['written']} written, "
        f"{rec['dropped']} dropped, {rec['repaired']} repaired",
        f"  records: {report['split']['train_records']} train / {report['split']['eval_records']} eval "
        f"({report['split']['train_queries']} / {report['split']['eval_queries']} queries) in {elapsed:.2f}s",
    ]
    if report["dropped"]:
        lines.append("  dropped by reason: " + ", ".join(f"{k}={v}" for k, v in report["dropped"].items()))
    if report["repaired"]:
        lines.append("  repairs by kind: " + ", ".join(f"{k}={v}" for k, v in report["repaired"].items()))
    total = report["lengths"]["total"]
    if total.get("count"):
        lines.append(f"  length ({report['lengths']['unit']}): mean {total['mean']}, p95 {total['p95']}, "
                     f"max {total['max']}")
    held = ",eval_queries.json" if (out / "eval_queries.json").is_file() else ""
    lines.append(f"  wrote {out}/{{train.jsonl,eval.jsonl,dataset/,prompt_spec.json{held},report.json}}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_tokens is not None and not args.tokenizer:
        parser.error("--max-tokens needs --tokenizer")
    if args.passage_length is not None and args.passage_length < 1:
        parser.error("--passage-length must be >= 1")
    if args.qrels and args.format not in ("auto", "qrels"):
        parser.error("--qrels is only for --format qrels (or auto)")

    from data_prep.formats import read_teacher
    from data_prep.listwise import ListwiseOptions, build_listwise, options_json, write_outputs
    from data_prep.prompts import get_prompt_spec
    from data_prep.readers import read_qrels

    try:
        options = ListwiseOptions(
            window=args.window, stride=args.stride, min_window=args.min_window, shuffle=args.shuffle,
            top_k=args.top_k, max_tokens=args.max_tokens, over_max_tokens=args.over_max_tokens,
            eval_fraction=args.eval_fraction, seed=args.seed, on_error=args.on_error,
        )
    except ValueError as err:
        parser.error(flag_message(err, flags_of(parser)))
    started = time.perf_counter()
    try:
        overrides: dict[str, Any] = {"cot": True} if args.cot else {}
        if args.passage_length is not None:
            overrides["truncate_length"] = args.passage_length
        spec = get_prompt_spec(args.prompt, **overrides)
        tokenizer = _load_tokenizer(args.tokenizer) if args.tokenizer else None
        qrels = read_qrels(args.qrels) if args.qrels else None
        fmt, records = read_teacher(args.teacher, args.format, qrels=qrels,
                                    response_id_base=args.response_id_base)
        from tqdm.auto import tqdm

        progress = tqdm(records, desc=f"prep listwise ({fmt})", unit="rec", file=sys.stderr,
                        disable=None, leave=False)
        result = build_listwise(progress, spec, options, tokenizer=tokenizer, source=args.teacher)
        if not result.train and not result.eval:  # nothing train could load: an error, not an empty folder
            dropped = result.report.to_json().get("dropped") or {}
            why = ", ".join(f"{k}={v}" for k, v in dropped.items())
            raise DataError(f"no records written ({result.report.read} teacher records read"
                            + (f"; dropped: {why}" if why else "") + ")", path=args.teacher,
                            reason="no_records", fix="check the teacher file and --format (with --on-error skip, "
                            "look at the drop reasons above)")
        elapsed = time.perf_counter() - started
        extra = {
            "command": "dear prep listwise",
            "argv": list(sys.argv[1:] if argv is None else argv),
            "teacher": str(args.teacher),
            "format": fmt,
            "format_detected": args.format == "auto",
            "qrels": args.qrels,
            "options": {**vars(args), **options_json(options)},
            "elapsed_s": round(elapsed, 3),
            "records_per_s": round(result.report.read / elapsed, 1) if elapsed > 0 else None,
        }
        write_outputs(args.out, result, spec, extra)
    except DataError as err:
        print(f"dear prep listwise: error: {flag_message(err, flags_of(parser))}", file=sys.stderr)
        return 2
    except OSError as err:
        print(os_error_line("dear prep listwise", err), file=sys.stderr)
        return 2
    import json

    report = json.loads((Path(args.out) / "report.json").read_text(encoding="utf-8"))
    print(_summary(report, Path(args.out), elapsed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
