#!/usr/bin/env bash
# Multi-node DeAR listwise LoRA training on a SLURM cluster: one `accelerate launch` per node, DeepSpeed ZeRO-2.
#
#   sbatch --nodes 2 scripts/slurm_train.sh PREP_OUT OUT [extra `dear train` flags...]
#
# Environment knobs: CONFIG (train YAML), ACCEL_CONFIG (accelerate YAML), GPUS_PER_NODE, MASTER_PORT, VENV.
#SBATCH --job-name=dear-listwise
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: sbatch --nodes N scripts/slurm_train.sh PREP_OUT OUT [--key value ...]" >&2
  exit 2
fi
PREP_OUT=$1
OUT=$2
shift 2

CONFIG=${CONFIG:-configs/train/llama31_8b_listwise_lora.yaml}
ACCEL_CONFIG=${ACCEL_CONFIG:-configs/accelerate/multi_node_example.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MASTER_PORT=${MASTER_PORT:-29500}
NNODES=${SLURM_NNODES:-1}
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-localhost}" | head -n 1)
if [ -n "${VENV:-}" ]; then
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi
cd "${SLURM_SUBMIT_DIR:-.}"   # configs/deepspeed/*.json paths are relative to the repo root
mkdir -p logs "$OUT"

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export NCCL_ASYNC_ERROR_HANDLING=1
export WANDB_RUN_GROUP=${WANDB_RUN_GROUP:-slurm-${SLURM_JOB_ID:-local}}

# One task per node; each runs accelerate, which starts GPUS_PER_NODE processes. A requeued job resumes
# from the newest complete checkpoint in OUT.
srun --kill-on-bad-exit=1 bash -c "accelerate launch \
  --config_file '$ACCEL_CONFIG' \
  --num_machines $NNODES --num_processes $((NNODES * GPUS_PER_NODE)) \
  --machine_rank \$SLURM_NODEID --main_process_ip $MASTER_ADDR --main_process_port $MASTER_PORT \
  --rdzv_backend c10d \
  -m dear_train.sft --config '$CONFIG' --dataset_path '$PREP_OUT' --output_dir '$OUT' \
  --resume_from_checkpoint auto $*"
