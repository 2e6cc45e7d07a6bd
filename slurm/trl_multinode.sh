#!/usr/bin/env bash
# Start the trl backend on every node of a multi-node Slurm job: one `accelerate launch` per
# node (srun --ntasks-per-node=1), each starting GPUS_PER_NODE ranks; rank 0's node is the
# rendezvous. Used by the train rule when hardware.nodes > 1 (rules/common.smk, train_launch).
#   slurm/trl_multinode.sh ACCELERATE_CONFIG GPUS_PER_NODE <obe.engines.trl_backend flags...>
# NOT RUN here: no multi-node cluster was available (README, "Training backends").
set -euo pipefail
config=$1 gpus=$2
shift 2
: "${SLURM_JOB_NODELIST:?run inside a Slurm allocation}"
nodes=${SLURM_NNODES:-1}
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${OBE_MASTER_PORT:-29500}
args=$(printf ' %q' "$@")
srun --nodes="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c \
  "python -m accelerate.commands.launch --config_file $config --num_machines $nodes \
   --num_processes $((nodes * gpus)) --machine_rank \$SLURM_NODEID --main_process_ip $head \
   --main_process_port $port -m obe.engines.trl_backend$args"
