#!/usr/bin/env bash
# Start the trl backend on every node of a multi-node Slurm job: one `accelerate launch` per
# node, each starting PROCS_PER_NODE ranks (one per GPU, or hardware.cpu_processes on CPU).
# The train rule runs it when hardware.nodes > 1 (rules/common.smk, train_launch):
#
#   slurm/trl_multinode.sh PROCS_PER_NODE <accelerate launch options> -- <obe.engines.trl_backend flags>
#
# It runs inside the job's allocation, on the node where the job's batch script runs (the
# train rule is an `mpi` job for Snakemake's Slurm executor, so the rule's command runs there,
# outside any job step). That node is the head: machine rank 0, the rendezvous.
#  1. The job's nodes come from `scontrol show job $SLURM_JOB_ID` (Snakemake's job-step
#     executor keeps SLURM_JOB_ID but drops the other SLURM_* variables).
#  2. The head's address is its NodeAddr in Slurm, the address slurmctld and the other nodes
#     reach it at (a name there is resolved by each node itself).
#  3. The rendezvous port: OBE_MASTER_PORT if set, else the first port free on the head
#     among OBE_RDZV_PORT_BASE + (SLURM_JOB_ID + i) % OBE_RDZV_PORT_RANGE, i = 0, 1, ...
#     (defaults 29500 and 2000), so two jobs on one head node do not both take 29500.
#  4. `srun` starts this script once per node (--node): every node other than the head
#     waits until the head's port answers, for at most OBE_RDZV_TIMEOUT seconds (default
#     300), then fails with a message that names both nodes; the head's launcher waits as
#     long for the others (torchrun's static rendezvous, --rdzv_conf timeout). Ranks are
#     numbered head first, then the other nodes in Slurm's order.
# A failing node ends the whole step (srun --kill-on-bad-exit). SIGTERM (a time limit,
# scancel) reaches every rank through Slurm and torchrun; the trainer then checkpoints.
set -euo pipefail

die() { echo "trl_multinode.sh: $*" >&2; exit 1; }
# One field of `scontrol show -o ...` output (KEY=VALUE words).
field() { tr ' ' '\n' <<<"$1" | sed -n "s|^$2=||p" | head -n 1; }
# Whether a TCP port is free to listen on here (a bind succeeds).
port_free() {
  python -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[1])))' "$1" 2>/dev/null
}
# Whether HOST:PORT accepts a TCP connection within 2 seconds.
port_answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

timeout_s=${OBE_RDZV_TIMEOUT:-300}

if [ "${1:-}" = "--node" ]; then
  # --- on every node, as one srun task: HEAD ADDR PORT NODE... -- PROCS OPTIONS... -- FLAGS...
  shift
  head=$1 addr=$2 port=$3
  shift 3
  order=()
  while [ "$1" != "--" ]; do order+=("$1"); shift; done
  shift
  procs=$1
  shift
  me=${SLURMD_NODENAME:?srun sets SLURMD_NODENAME}
  rank=
  for i in "${!order[@]}"; do [ "${order[$i]}" = "$me" ] && rank=$i; done
  [ -n "$rank" ] || die "node $me is not one of the job's nodes (${order[*]})"
  if [ "$me" != "$head" ]; then
    deadline=$((SECONDS + timeout_s))
    until port_answers "$addr" "$port"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        die "node $me cannot reach the head node $head at $addr:$port within ${timeout_s} s" \
          "(OBE_RDZV_TIMEOUT): check that $me can connect to $addr (NodeAddr of $head in Slurm)," \
          "or that the head's launcher started (its log is the train rule's log)"
      fi
      sleep 1
    done
  fi
  launch=()
  while [ "$1" != "--" ]; do launch+=("$1"); shift; done
  shift
  echo "trl_multinode.sh: node $me, machine rank $rank of ${#order[@]}, rendezvous $addr:$port" >&2
  exec python -m obe.engines.launch "${launch[@]}" --num_machines "${#order[@]}" \
    --num_processes "$((${#order[@]} * procs))" --machine_rank "$rank" --main_process_ip "$addr" \
    --main_process_port "$port" --rdzv_backend static --same_network --rdzv_conf "timeout=$timeout_s" \
    -m obe.engines.trl_backend "$@"
fi

# --- in the job's batch step, on the head node: PROCS OPTIONS... -- FLAGS...
[ "$#" -ge 2 ] || die "usage: trl_multinode.sh PROCS_PER_NODE <accelerate launch options> -- <trainer flags>"
procs=$1
shift
[[ "$procs" =~ ^[1-9][0-9]*$ ]] || die "PROCS_PER_NODE must be a positive integer, got '$procs'"
: "${SLURM_JOB_ID:?trl_multinode.sh runs inside a Slurm job (hardware.nodes > 1 needs snakemake --profile slurm)}"
job=$(scontrol show -o job "$SLURM_JOB_ID") || die "scontrol cannot show job $SLURM_JOB_ID"
nodelist=$(field "$job" NodeList)
mapfile -t nodes < <(scontrol show hostnames "$nodelist")
[ "${#nodes[@]}" -ge 2 ] || die "job $SLURM_JOB_ID has ${#nodes[@]} node(s) ($nodelist); a multi-node run needs the nodes hardware.nodes asks for"
head=${SLURMD_NODENAME:-${nodes[0]}}
order=("$head")
for n in "${nodes[@]}"; do [ "$n" = "$head" ] || order+=("$n"); done
[ "${#order[@]}" -eq "${#nodes[@]}" ] || die "this node ($head) is not one of job $SLURM_JOB_ID's nodes ($nodelist)"
addr=$(field "$(scontrol show -o node "$head")" NodeAddr)
[ -n "$addr" ] || die "no NodeAddr for node $head in scontrol show node"

if [ -n "${OBE_MASTER_PORT:-}" ]; then
  port=$OBE_MASTER_PORT
else
  base=${OBE_RDZV_PORT_BASE:-29500} range=${OBE_RDZV_PORT_RANGE:-2000}
  port=
  for ((i = 0; i < range && i < 100; i++)); do
    candidate=$((base + (SLURM_JOB_ID + i) % range))
    if port_free "$candidate"; then port=$candidate; break; fi
  done
  [ -n "$port" ] || die "no free port on $head among 100 tried in [$base, $((base + range))) (OBE_RDZV_PORT_BASE, OBE_RDZV_PORT_RANGE)"
fi

cpus=$(field "$job" CPUs/Task)
step=(--nodes="${#nodes[@]}" --ntasks="${#nodes[@]}" --ntasks-per-node=1 --kill-on-bad-exit=1)
[[ "$cpus" =~ ^[0-9]+$ ]] && step+=(--cpus-per-task="$cpus")
echo "trl_multinode.sh: job $SLURM_JOB_ID, ${#nodes[@]} nodes x $procs processes, head $head ($addr:$port)" >&2
exec srun "${step[@]}" bash "$0" --node "$head" "$addr" "$port" "${order[@]}" -- "$procs" "$@"
