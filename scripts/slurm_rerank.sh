#!/usr/bin/env bash
# Data-parallel `dear rerank` on a SLURM cluster: one torchrun per node, one process per GPU, the queries
# split over all processes, one run out (rank 0 merges the per-rank parts next to --out).
#
#   sbatch --nodes 2 scripts/slurm_rerank.sh --model ADAPTER --input msmarco_dev_top100.json \
#       --out runs/dev.trec --jsonl runs/dev.jsonl [any other `dear rerank` flag...]
#
# Resubmitting the same command after a preemption or a crash resumes (with any number of nodes or GPUs);
# a second job on the same --out is refused. --out must be on a file system all nodes share.
# Environment knobs: GPUS_PER_NODE, MASTER_PORT, VENV.
#SBATCH --job-name=dear-rerank
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

if [ "$#" -lt 1 ]; then
  echo "usage: sbatch --nodes N scripts/slurm_rerank.sh --model M --input IN --out RUN.trec [--key value ...]" >&2
  exit 2
fi

GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MASTER_PORT=${MASTER_PORT:-29510}
NNODES=${SLURM_NNODES:-1}
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-localhost}" | head -n 1)
if [ -n "${VENV:-}" ]; then
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi
cd "${SLURM_SUBMIT_DIR:-.}"
mkdir -p logs

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
export TOKENIZERS_PARALLELISM=false

# One task per node; each torchrun starts GPUS_PER_NODE processes and they meet through the c10d rendezvous
# on the first node. The arguments go to every process unchanged ("$@", no re-quoting). A rank that fails
# makes rank 0 print its message and the job exit non-zero; --kill-on-bad-exit stops the other nodes.
srun --kill-on-bad-exit=1 torchrun \
  --nnodes "$NNODES" --nproc_per_node "$GPUS_PER_NODE" \
  --rdzv_id "${SLURM_JOB_ID:-local}" --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" \
  -m inference.rerank "$@"
