"""`dear prep listwise`: teacher rankings -> listwise SFT records (JSONL + datasets folder + report)."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_prep.cli_options import (
    OptionError,
    check_outputs,
    checked,
    flags_of,
    option,
    parse_options,
)
from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_run import run_command
from data_prep.formats import FORMATS, REGISTRY
from data_prep.prompts import PROMPT_SPECS
from data_prep.schema import DataError

FORMAT_CHOICES = ("auto", *FORMATS)
# what `dear prep listwise` writes in --out (data_prep.listwise.write_outputs); other files there are left alone
OUTPUT_NAMES = ("train.jsonl", "eval.jsonl", "dataset", "prompt_spec.json", "report.json", "eval_queries.json")


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
An --out that already holds these files (an earlier prep) is refused unless --overwrite; other files there
are left alone, and no input may be one of them.
"""


@dataclass
class PrepListwiseOptions:
    """Every `dear prep listwise` option (parser, --help with defaults, checks before any file is read)."""

    teacher: str = option(metavar="FILE", help="teacher outputs (.json/.jsonl, .gz ok)")
    out: str = option(metavar="DIR", help="output folder")
    format: str = option("auto", choices=FORMAT_CHOICES, help="teacher format")
    qrels: str | None = option(None, metavar="QRELS", help="TREC qrels: judgments become the teacher (--format qrels)")
    prompt: str = option("dear-card", choices=sorted(PROMPT_SPECS),
                         help="prompt template (dear-card: the released DeAR adapter's prompt)")
    passage_length: int | None = option(None, metavar="N",
                                        help="cut each passage to N units of the template (characters for dear-card, "
                                        "words for the chat templates; default 300); saved in prompt_spec.json so "
                                        "inference matches")
    window: int = option(20, help="passages per record; longer lists become windows")
    stride: int | None = option(None, help="step between windows (default: window // 2)")
    min_window: int | None = option(None, metavar="N",
                                    help="variable window lengths: each window draws its length in [N, --window]")
    shuffle: int = option(0, metavar="K", help="add K copies of each window with the candidates shuffled "
                          "(target remapped)")
    top_k: int | None = option(None, metavar="K", help="use only the first K candidates as the file lists them")
    cot: bool = option(False, negatable=True, help="chain-of-thought targets: the teacher's reasoning, then the ranking")
    tokenizer: str | None = option(None, metavar="PATH", help="tokenizer folder: token lengths and --max-tokens")
    max_tokens: int | None = option(None, metavar="N", help="limit on prompt + completion tokens (needs --tokenizer)")
    over_max_tokens: str = option("trim", choices=("trim", "drop"),
                                  help="records over --max-tokens: shrink passages evenly (trim) or drop them")
    eval_fraction: float = option(0.05, metavar="F",
                                  help="share of queries held out for eval (split by qid; 0: no eval split)")
    seed: int = option(0, help="seed for the split, shuffles and variable windows")
    on_error: str = option("fail", choices=("fail", "skip"),
                           help="bad input: stop naming file, line, qid and fix (fail), or count it and go on (skip)")
    response_id_base: int = option(1, choices=(0, 1),
                                   help="--format responses: ids in the raw responses start at 0 or 1")
    overwrite: bool = option(False, help="replace the files an earlier `dear prep listwise` wrote in --out")
    teacher_grade_depth: int = option(10, metavar="M",
                                      help="grades for GRPO's ranking reward from a teacher order: the window's top "
                                      "min(M, n) get M..1 (n..1 when n <= M), the rest 0; --format qrels uses "
                                      "the qrels grades instead")

    def check(self) -> None:
        if self.max_tokens is not None and not self.tokenizer:
            raise OptionError("max_tokens", "needs --tokenizer", fix="pass --tokenizer PATH (the model's tokenizer)")
        if self.passage_length is not None and self.passage_length < 1:
            raise OptionError("passage_length", "must be >= 1", fix="e.g. 300")
        if self.qrels and self.format not in ("auto", "qrels"):
            raise OptionError("qrels", "is only for --format qrels (or auto)", fix="drop --qrels or use --format qrels")
        self.listwise_options()  # ValueError naming the field
        from data_prep.cli_options import check_output_file

        check_output_file(str(Path(self.out) / "report.json"), "output folder's files")
        check_outputs({"out": [str(Path(self.out) / name) for name in OUTPUT_NAMES]},
                      {"teacher": self.teacher, "qrels": self.qrels}, fresh=("out",), overwrite=self.overwrite,
                      overwrite_fix="pass --overwrite to replace the earlier prep output, or choose another --out")

    def listwise_options(self) -> Any:
        from data_prep.listwise import ListwiseOptions

        return ListwiseOptions(
            window=self.window, stride=self.stride, min_window=self.min_window, shuffle=self.shuffle,
            top_k=self.top_k, max_tokens=self.max_tokens, over_max_tokens=self.over_max_tokens,  # type: ignore[arg-type]
            eval_fraction=self.eval_fraction, seed=self.seed, on_error=self.on_error,  # type: ignore[arg-type]
            teacher_grade_depth=self.teacher_grade_depth,
        )


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(PrepListwiseOptions, prog="dear prep listwise", description=__doc__, epilog=EPILOG)


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
    args = parse_options(PrepListwiseOptions, argv, prog="dear prep listwise", parser=build_parser())
    return run_command("dear prep listwise", lambda: _run(args, argv), flags=flags_of(PrepListwiseOptions),
                       os_errors="all")


def _run(args: PrepListwiseOptions, argv: list[str] | None) -> int:
    checked(args, prog="dear prep listwise")
    from data_prep.formats import read_teacher
    from data_prep.listwise import build_listwise, options_json, write_outputs
    from data_prep.prompts import get_prompt_spec
    from data_prep.readers import read_qrels

    options = args.listwise_options()
    started = time.perf_counter()
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
        "options": {**asdict(args), **options_json(options)},
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(result.report.read / elapsed, 1) if elapsed > 0 else None,
    }
    write_outputs(args.out, result, spec, extra)
    import json

    report = json.loads((Path(args.out) / "report.json").read_text(encoding="utf-8"))
    print(_summary(report, Path(args.out), elapsed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
