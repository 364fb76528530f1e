"""The `dear` console script: one thin dispatcher, each subcommand's module imported only when used.

Every subcommand module exposes ``main(argv: list[str] | None = None) -> int``.
"""

from __future__ import annotations

import importlib
import logging
import sys

# name -> (module, one-line help). Modules are imported lazily so `dear --help` is instant.
COMMANDS: dict[str, tuple[str, str]] = {
    "tiny-model": ("dear_train.tiny_model_cli", "build a tiny random Llama + tokenizer offline (tests, quickstart)"),
    "prep": ("dear_train.prep_cli", "build SFT datasets from teacher outputs (`dear prep listwise|pointwise`)"),
    "train": ("dear_train.sft", "LoRA SFT of a listwise reranker (TRL SFTTrainer)"),
    "distill": ("dear_train.distill", "stage-1 pointwise distillation (CE/RankNet + KL)"),
    "rerank": ("inference.cli_rerank", "rerank first-stage candidates, write a TREC run"),
    "serve": ("inference.serve.cli", "serve the Cohere/Jina rerank API over HTTP (the serve extra)"),
    "eval": ("inference.cli_eval", "trec_eval-compatible metrics of a run against qrels"),
    "export": ("dear_train.export.cli", "verify, merge and publish an adapter with a model card"),
    "teacher": ("data_prep.teacher_cli", "generate chain-of-thought teacher rankings from a chat endpoint"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: dear <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`dear <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dear: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
