"""Inputs that tell surviving parser mutants apart from the parser (docs/mutation.md).

Run after `scripts/mutation.sh parser`: for each mutant that survived, it parses variants of every answer in the
parser tests (prefixed with a label or a marker, followed by an echoed passage or a comparison, joined with other
separators, ...) under the original code and under the mutant, and prints the shortest answer whose reading
(order, repairs, rule, source) or tokens differ. A printed answer is a test to write once a careful reader has
checked the original's reading; a mutant with none is equivalent on every answer tried.

    scripts/mutation.sh parser
    .venv/bin/python scripts/mutation_inputs.py [--limit N] > inputs.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PREFIXES = ("Ranking: ", "### Final Reranking: ", "[Start] ", "1. ", "- ", "Answer:\n", "I think ")
SUFFIXES = (" [End]", ".", "\n\nThe rest: [9] > [8].", "\n[3] is about cats.", " because [1] is best.")
SWAPS = ((" > ", ", "), (" > ", " < "), (" > ", "-"), (" > ", "\n"), ("[", ""), ("]", ""), (" ", "  "), ("\n", " "))
WINDOWS = (3, 5, 10, 20)


def test_answers(paths: Iterable[Path]) -> list[str]:
    """The string literals with a digit in the parser test files and the reference answers (short ones)."""
    out: set[str] = set()
    for path in paths:
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and 2 < len(node.value) < 400 \
                        and re.search(r"\d", node.value):
                    out.add(node.value)
        else:
            for line in path.read_text(encoding="utf-8").splitlines():
                text = json.loads(line).get("text", "")
                if 0 < len(text) < 300 and re.search(r"\d", text):
                    out.add(text)
    return sorted(out, key=lambda t: (len(t), t))


def variants(text: str) -> Iterator[str]:
    """``text`` and the forms a model could have written it in."""
    yield text
    yield from (p + text for p in PREFIXES)
    yield from (text + s for s in SUFFIXES)
    yield from (text.replace(a, b) for a, b in SWAPS if a in text)


def corpus(answers: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for text in answers:
        for v in variants(text):
            seen.setdefault(v)
    return sorted(seen, key=lambda t: (len(t), t))


def first_difference(texts: list[str], windows: Iterable[int], read: Callable[[str, int], Any],
                     baseline: dict[tuple[str, int], Any]) -> tuple[str, int, Any, Any] | None:
    """The first (shortest) text and window size where ``read`` differs from ``baseline``."""
    for text in texts:
        for n in windows:
            got = read(text, n)
            if got != baseline[(text, n)]:
                return text, n, baseline[(text, n)], got
    return None


def _reader() -> Callable[[str, int], Any]:
    from data_prep.ranking import parse_ranking
    from data_prep.ranking.tokens import fold, tokens

    def read(text: str, n: int) -> Any:
        try:
            r = parse_ranking(text, n, base=1)
            toks = [(t.kind, t.start, t.end, t.value, t.bare) for t in tokens(fold(text))]
            return [r.order, sorted(r.repairs.items()), r.rule, r.source, toks]
        except Exception as err:  # a mutant that raises differs from the parser
            return ["raised", type(err).__name__]
    return read


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(REPO / ".mutation" / "parser"), help="the folder mutation.sh parser used")
    ap.add_argument("--limit", type=int, default=0, help="only the first N survivors (0: all)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    if not (work / "mutants").is_dir():
        print(f"mutation_inputs.py: error: {work}/mutants not found -- fix: run scripts/mutation.sh parser first",
              file=sys.stderr)
        return 2
    mutmut = Path(sys.executable).parent / "mutmut"
    listing = subprocess.run([str(mutmut), "results"], cwd=work, capture_output=True, text=True, check=False).stdout
    names = [line.split(":")[0].strip() for line in listing.splitlines() if line.strip().endswith(": survived")]
    names = names[: args.limit] if args.limit else names
    sys.path.insert(0, str(work / "mutants"))
    os.environ["MUTANT_UNDER_TEST"] = ""  # mutmut's trampolines run the original code
    read = _reader()
    tests = REPO / "tests"
    texts = corpus(test_answers([tests / "test_parser_families.py", tests / "test_parser_properties.py",
                                 tests / "data" / "parser_reference.jsonl"]))
    baseline = {(t, n): read(t, n) for t in texts for n in WINDOWS}
    for name in names:
        os.environ["MUTANT_UNDER_TEST"] = name
        hit = first_difference(texts, WINDOWS, read, baseline)
        os.environ["MUTANT_UNDER_TEST"] = ""
        print(json.dumps({"mutant": name, "input": hit and hit[0], "window": hit and hit[1],
                          "parser": hit and hit[2][:4], "mutant_reads": hit and hit[3][:4]}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
