#!/usr/bin/env bash
# Mutation testing of one core module with mutmut 3 and only the tests that cover it (docs/mutation.md).
#
#   scripts/mutation.sh MODULE [MUTANT_GLOB ...]     # MODULE: parser windows prompts first_token_loss
#                                                    #   distill_losses serve_schemas runfiles readers parallel
#   scripts/mutation.sh list                         # the modules, their files and tests
#
# Works in .mutation/MODULE/ (a fresh copy of the packages, tests and pyproject.toml whose [tool.mutmut]
# section gets the module's only_mutate and test selection), so runs of different modules never share state
# and the worktree is untouched. One mutant at a time (--max-children 1; set MUTATION_CHILDREN to change):
# the project's machine has two cores shared by several people. Prints killed / survived / timeout / no tests
# per run and leaves `mutmut results`, `mutmut show NAME` usable inside .mutation/MODULE/. Not a CI step.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || py=$(command -v python3)

module_spec() {  # prints: files-to-mutate (globs) | test files (pytest arguments) | mutant-name globs (empty: all)
    # (first_token_loss leaves out its 40-step training test: 30 s a mutant, and it checks no loss detail)
    case $1 in
        parser) echo "data_prep/ranking/*.py|tests/test_parser_families.py tests/test_parser_properties.py tests/test_parser_reference.py|" ;;
        windows) echo "data_prep/windows.py|tests/test_windows.py|" ;;
        prompts) echo "data_prep/prompts.py|tests/test_prompts.py|" ;;
        first_token_loss) echo "dear_train/first_token_loss.py|tests/test_first_token_loss.py --deselect tests/test_first_token_loss.py::test_first_token_objective_raises_first_token_agreement_more_than_lm_only|dear_train.first_token_loss.x_ranknet_weighted* dear_train.first_token_loss.x_completion_targets* *FirstTokenObjective*" ;;
        distill_losses) echo "dear_train/distill_losses.py|tests/test_distill_losses.py|" ;;
        serve_schemas) echo "inference/serve/schemas.py inference/serve/engine.py|tests/test_serve_units.py|inference.serve.schemas.* *_cut_tokens__mutmut_*" ;;
        runfiles) echo "inference/runfiles.py|tests/test_runfiles.py tests/test_rerank_distributed.py tests/test_infer_cli.py tests/test_boundaries_files.py|" ;;
        readers) echo "data_prep/readers.py|tests/test_trec_readers.py tests/test_infer_metrics.py tests/test_prep_formats.py tests/test_bad_input.py|data_prep.readers.x*run* data_prep.readers.x*qrels* data_prep.readers.x_check_score*" ;;
        parallel) echo "inference/parallel/*.py|tests/test_rerank_distributed.py|inference.parallel.group.* inference.parallel.x_shard* inference.parallel.rerank.x__finish* inference.parallel.rerank.x_merge_summary*" ;;
        *) return 1 ;;
    esac
}
MODULES="parser windows prompts first_token_loss distill_losses serve_schemas runfiles readers parallel"

if [ "${1:-}" = "" ] || [ "$1" = "-h" ] || [ "$1" = "--help" ] || [ "$1" = "list" ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    for m in $MODULES; do echo "  $m: $(module_spec "$m")"; done
    [ "${1:-}" = "list" ] && exit 0 || exit 2
fi
mod=$1; shift
spec=$(module_spec "$mod") || { echo "mutation.sh: error: unknown module '$mod' (one of: $MODULES)" >&2; exit 2; }
IFS='|' read -r files tests names <<<"$spec"
[ $# -gt 0 ] && names="$*"

work=$repo/.mutation/$mod
rm -rf "$work"
mkdir -p "$work"
cp -a "$repo/data_prep" "$repo/inference" "$repo/dear_train" "$repo/tests" "$repo/scripts" "$repo/configs" "$repo/docs" "$repo/README.md" \
    "$repo/pyproject.toml" "$work/"
find "$work" -name __pycache__ -prune -exec rm -rf {} +
"$py" - "$work/pyproject.toml" "$files" "$tests" <<'EOF'
import json, re, sys
path, files, tests = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
text = open(path, encoding="utf-8").read()
# the module's files and tests added to the [tool.mutmut] section
section = re.search(r"^\[tool\.mutmut\]\n(?:(?!^\[).*\n?)*", text, re.MULTILINE)
if section is None:
    sys.exit("pyproject.toml has no [tool.mutmut] section")
extra = f"only_mutate = {json.dumps(files)}\npytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
open(path, "w", encoding="utf-8").write(text[: section.end()].rstrip("\n") + "\n" + extra + "\n" + text[section.end():])
EOF

shared=${DEAR_SHARED_DATA:-$(cd "$repo/.." && pwd)/shared/data}
cd "$work"
export DEAR_SHARED_DATA=$shared HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 WANDB_MODE=offline \
    DS_ACCELERATOR=cpu TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mutmut=$(dirname "$py")/mutmut
start=$(date +%s)
# shellcheck disable=SC2086
"$mutmut" run --max-children "${MUTATION_CHILDREN:-1}" $names >run.log 2>&1 || true
"$mutmut" results --all true >results.txt 2>/dev/null || true
"$py" - "$mod" "$(( $(date +%s) - start ))" <<'EOF'
import collections, sys
counts = collections.Counter(line.rsplit(": ", 1)[1].strip() for line in open("results.txt") if ": " in line)
total = sum(counts.values())
print(f"{sys.argv[1]}: {total} mutants, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
      + f" ({sys.argv[2]} s); survivors: grep -v killed {'.mutation/' + sys.argv[1]}/results.txt")
EOF
