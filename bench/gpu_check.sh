#!/usr/bin/env bash
# GPU acceptance check: vLLM sampling, GPU training (grpo, ucb_con, batch; the trl backend when
# present) and evaluation on a tiny Qwen2 built here. No network needed. One line per part:
# PASS/FAIL/SKIP, tokens/s, peak GPU memory. Budget: at most 8 minutes on one GPU.
#
#   bash bench/gpu_check.sh                 # on a GPU machine with `pip install -e '.[gpu]'`
#   bash bench/gpu_check.sh --device cpu    # dry run of the script on a CPU machine (no vLLM)
#
# Exit status: the number of failed parts (0 = all passed or skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled OMP_WAIT_POLICY=PASSIVE
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec timeout --signal=TERM --kill-after=20 480 "$PY" bench/gpu_check.py "$@"
