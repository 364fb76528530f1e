"""`dear export`: verify an adapter, write a clean (or merged) folder with its model card, push it to the Hub.

    dear export --adapter runs/train --out runs/export [--merge --dtype bf16] [--push-to-hub me/dear-lora]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from data_prep.cli_options import (
    OptionError,
    check_outputs,
    checked,
    flag_message,
    flags_of,
    option,
    parse_options,
)
from data_prep.cli_options import build_parser as build_options_parser
from dear_train.export.verify import TORCH_DTYPES

DESCRIPTION = ("Verify a trained LoRA adapter (listwise from `dear train`: on ranking prompts; pointwise from "
               "`dear distill`: on (query, passage) pairs), write a clean adapter folder (or the merged "
               "model) with a model card, and optionally publish it to the Hugging Face Hub. "
               "Nothing is written to --out unless the checks pass.")


@dataclass
class ExportOptions:
    """Every `dear export` option (parser, --help with defaults, checks before anything loads)."""

    adapter: str = option(help="training output / adapter folder (`dear train` or `dear distill` --output_dir)")
    out: str = option(help="new (or empty) folder for the export")
    merge: bool = option(False, help="merge the LoRA into the base model (merge_and_unload)")
    dtype: str = option("bf16", choices=sorted(TORCH_DTYPES),
                        help="dtype of the merged weights and of the verification forward passes")
    base_model: str | None = option(None, help="where to load the base model from (default: the one "
                                    "dear_training.json records)")
    device: str = option("auto", help="where the checks and the merge run: auto (a GPU when visible), cpu, cuda, "
                         "cuda:1 ...")
    max_shard_size: str = option("5GB", help="safetensors shard size of a merged export")
    license: str | None = option(None, help="license id for the card's metadata (default: inferred from the base "
                                 "model, else 'other')")
    push_to_hub: str | None = option(None, metavar="OWNER/NAME", help="upload the export to this Hub repo")
    private: bool = option(False, help="create the Hub repo as private")
    revision: str | None = option(None, help="branch to upload to (created if missing; default main)")
    commit_message: str | None = option(None, help="commit message of the upload")
    dry_run: bool = option(False, help="build and verify the exact folder that would be uploaded, list it, touch "
                           "no network")

    def check(self) -> None:
        if not self.push_to_hub and (self.private or self.revision or self.commit_message):
            raise OptionError("push_to_hub", "--private, --revision and --commit-message need --push-to-hub",
                              fix="add --push-to-hub OWNER/NAME, or drop them")
        # the export replaces --out whole: neither the adapter nor the base model may be (inside) it; a
        # non-empty --out is refused by the build's own check (exit 1, as every failed export check)
        check_outputs({"out": self.out}, {"adapter": self.adapter, "base_model": self.base_model})


def build_parser() -> argparse.ArgumentParser:
    return build_options_parser(ExportOptions, prog="dear export", description=DESCRIPTION)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_options(ExportOptions, argv, prog="dear export", parser=parser)
    try:
        checked(args, prog="dear export")
    except ValueError as err:  # OptionError: a usage error, as argparse reports one
        parser.error(flag_message(err, flags_of(ExportOptions)))

    from data_prep.schema import DataError
    from dear_train.export import hub
    from dear_train.export.build import export_adapter
    from dear_train.export.verify import ExportVerificationError

    try:
        token = None
        if args.push_to_hub:
            hub.check_repo_id(args.push_to_hub)
            # fail before the (long) build, not after it; a dry run checks exactly as the push will
            token, _ = hub.resolve_token(dry_run=args.dry_run)
        result = export_adapter(
            args.adapter, args.out, merge=args.merge, dtype=args.dtype, base_model=args.base_model,
            max_shard_size=args.max_shard_size, repo_id=args.push_to_hub, license=args.license,
            local_files_only=args.dry_run, device=args.device,
        )
    except (DataError, ExportVerificationError, OSError) as err:
        print(f"dear export: {err}", file=sys.stderr)
        if isinstance(err, OSError) and args.dry_run:
            print("dear export: a dry run reads models from disk only; pass --base-model PATH", file=sys.stderr)
        print(f"dear export: nothing was written to {args.out}", file=sys.stderr)
        return 1

    r = result.report
    kind = f"merged model ({args.dtype})" if result.merged else "adapter"
    probes = "queries' (query, passage) pairs" if result.task == "pointwise" else "ranking prompts"
    print(f"{kind} export verified on {r.probes} {probes}: max relative logit difference "
          f"{r.export_vs_source:.3g} to the source adapter (tolerance {r.tolerance:g}), "
          f"{r.export_vs_base:.3g} to the base model")
    total = sum(size for _, size in result.files)
    print(f"{result.out} ({len(result.files)} files, {_size(total)}):")
    width = max(len(name) for name, _ in result.files)
    for name, size in result.files:
        print(f"  {name:<{width}}  {_size(size):>9}")

    if not args.push_to_hub:
        return 0
    target = f"{args.push_to_hub} ({'private' if args.private else 'public'}, revision {args.revision or 'main'})"
    if args.dry_run:
        try:
            hub.check_no_token_in_folder(result.out, token)  # what the push refuses, the dry run refuses
        except DataError as err:
            print(f"dear export: {err}", file=sys.stderr)
            return 1
        print(f"dry run: would upload these {len(result.files)} files ({_size(total)}) to {target}")
        return 0
    try:
        pushed = hub.push_folder(result.out, args.push_to_hub, private=args.private, revision=args.revision,
                                 commit_message=args.commit_message)
    except (DataError, OSError) as err:  # huggingface_hub's HTTP and offline errors are OSErrors
        print(f"dear export: upload failed: {err}", file=sys.stderr)
        print(f"dear export: the verified export is in {result.out}; retry with "
              f"`hf upload {args.push_to_hub} {result.out}`", file=sys.stderr)
        return 1
    print(f"uploaded to {target}: {pushed.commit_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
