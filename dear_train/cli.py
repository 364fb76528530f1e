"""The `dear` console script: one thin dispatcher, each subcommand's module imported only when used.

Every subcommand module exposes ``main(argv: list[str] | None = None) -> int``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings

# name -> (module, one-line help). Modules are imported lazily so `dear --help` is instant.
COMMANDS: dict[str, tuple[str, str]] = {
    "tiny-model": ("dear_train.tiny_model_cli", "build a tiny random Llama + tokenizer offline (tests, quickstart)"),
    "prep": ("dear_train.prep_cli", "build SFT datasets from teacher outputs (`dear prep listwise|pointwise`)"),
    "train": ("dear_train.sft", "LoRA SFT of a listwise reranker (TRL SFTTrainer); --method grpo: ranking rewards"),
    "distill": ("dear_train.distill", "stage-1 pointwise distillation (CE/RankNet + KL)"),
    "rerank": ("inference.cli_rerank", "rerank first-stage candidates, write a TREC run"),
    "serve": ("inference.serve.cli", "serve the Cohere/Jina rerank API over HTTP (the serve extra)"),
    "mcp": ("inference.integrations.mcp_server", "a `rerank` tool for agents over MCP stdio (the mcp extra)"),
    "eval": ("inference.cli_eval", "trec_eval-compatible metrics of a run against qrels"),
    "export": ("dear_train.export.cli", "verify, merge and publish an adapter with a model card"),
    "teacher": ("data_prep.teacher_cli", "generate chain-of-thought teacher rankings from a chat endpoint"),
}


def version() -> str:
    """The installed package version (the source tree's pyproject version when run from a checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("dear-reranker")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


class _DropMessages(logging.Filter):
    """Drops log records whose text holds one of ``needles`` (third-party notes a user cannot act on)."""

    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in str(record.msg) for n in self.needles)


_KERNELS_NOTE = _DropMessages("pip install kernels")


def quiet_third_party() -> None:
    """Silence, at CLI start only, the warnings every command would print that say nothing a user can act on:
    bitsandbytes' "pip install kernels" note on CPUs with AVX512-BF16 (an optional speed-up of 4-bit matmuls),
    and FutureWarnings raised inside the pinned libraries about their own deprecations. Our own warnings and
    every other library warning still show."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_KERNELS_NOTE)  # once, however often called
    warnings.filterwarnings("ignore", category=FutureWarning,
                            module=r"(transformers|torch|trl|peft|accelerate|datasets|deepspeed|bitsandbytes"
                                   r"|huggingface_hub)(\.|$)")


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: dear <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`dear <command> --help` for a command's options; `dear --version` for the version."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"dear {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dear: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_third_party()
    module = importlib.import_module(COMMANDS[name][0])
    from data_prep.cli_run import run_command

    # each command routes its errors through run_command itself; this outer one only catches what a command
    # let through (a disk fault outside its body, a DataError it did not expect): one line, not a traceback
    return run_command(f"dear {name}", lambda: module.main(rest))


if __name__ == "__main__":
    raise SystemExit(main())
