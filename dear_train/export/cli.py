"""`dear export`: verify an adapter, write a clean (or merged) folder with its model card, push it to the Hub.

    dear export --adapter runs/train --out runs/export [--merge --dtype bf16] [--push-to-hub me/dear-lora]
"""

from __future__ import annotations

import argparse
import sys

from dear_train.export.verify import TORCH_DTYPES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False,
        prog="dear export",
        description="Verify a trained LoRA adapter (listwise from `dear train`: on ranking prompts; pointwise from "
                    "`dear distill`: on (query, passage) pairs), write a clean adapter folder (or the merged "
                    "model) with a model card, and optionally publish it to the Hugging Face Hub. "
                    "Nothing is written to --out unless the checks pass.",
    )
    p.add_argument("--adapter", required=True,
                   help="training output / adapter folder (`dear train` or `dear distill` --output_dir)")
    p.add_argument("--out", required=True, help="new (or empty) folder for the export")
    p.add_argument("--merge", action="store_true", help="merge the LoRA into the base model (merge_and_unload)")
    p.add_argument("--dtype", choices=sorted(TORCH_DTYPES), default="bf16",
                   help="dtype of the merged weights and of the verification forward passes (default bf16)")
    p.add_argument("--base-model", default=None,
                   help="where to load the base model from (default: the one dear_training.json records)")
    p.add_argument("--device", default="auto",
                   help="where the checks and the merge run: auto (a GPU when visible), cpu, cuda, cuda:1 ...")
    p.add_argument("--max-shard-size", default="5GB", help="safetensors shard size of a merged export (default 5GB)")
    p.add_argument("--license", default=None,
                   help="license id for the card's metadata (default: inferred from the base model, else 'other')")
    p.add_argument("--push-to-hub", metavar="OWNER/NAME", default=None, help="upload the export to this Hub repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--revision", default=None, help="branch to upload to (created if missing; default main)")
    p.add_argument("--commit-message", default=None, help="commit message of the upload")
    p.add_argument("--dry-run", action="store_true",
                   help="build and verify the exact folder that would be uploaded, list it, touch no network")
    return p


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.push_to_hub and (args.private or args.revision or args.commit_message):
        parser.error("--private, --revision and --commit-message need --push-to-hub")

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
