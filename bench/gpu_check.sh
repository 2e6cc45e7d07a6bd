#!/usr/bin/env bash
# GPU acceptance check (bench/gpu_check.py says what each part runs): vLLM and HF sampling, the
# chat-template path, GPU training (obe.train for grpo, ucb_con, batch; the trl backend), FSDP2
# (the sharded save and sharded gradient accumulation of obe.engines.fsdp; the trl backend under
# accelerate with configs/accelerate/fsdp.yaml) and evaluation on a tiny Qwen2 built here. One line
# per part: PASS/FAIL/SKIP, tokens/s, peak GPU memory. No network; budget: 8 minutes on one GPU.
#
#   bash bench/wheelhouse.sh 3.11            # here, once: bench/wheelhouse/ (the image's Python version)
#   bash bench/gpu_check.sh                  # on the GPU machine (carry: bench/wheelhouse)
#   bash bench/gpu_check.sh --device cpu     # dry run on a CPU machine (tests/test_gpu_check.py)
#
# It runs against the machine's own torch: $PYTHON (default python3, the image's interpreter) makes
# a venv with --system-site-packages at $OBE_CHECK_VENV (default /tmp/obe_gpu_check_venv), and
# installs the wheelhouse's pins for that Python into it offline (pip --no-index --no-deps; they
# shadow older copies in the image). When $PYTHON is itself a venv (a dry run from the project's
# .venv), the new venv also sees that venv's packages, after its own. $OBE_WHEELHOUSE overrides
# bench/wheelhouse. Exit status: the number of failed parts (0 = all passed or skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled OMP_WAIT_POLICY=PASSIVE
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1
BASE=${PYTHON:-python3}
WHEELS=${OBE_WHEELHOUSE:-bench/wheelhouse}
VENV=${OBE_CHECK_VENV:-/tmp/obe_gpu_check_venv}

version=$("$BASE" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || { echo "FAIL  setup  no $BASE"; exit 1; }
pins="$WHEELS/requirements-cp${version/./}.txt"
if [ ! -f "$pins" ]; then
  echo "FAIL  setup           no $pins: run 'bash bench/wheelhouse.sh $version' on a machine with the package registry"
  exit 1
fi
rm -rf "$VENV"
"$BASE" -m venv --system-site-packages --without-pip "$VENV" || { echo "FAIL  setup  venv failed"; exit 1; }
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# $PYTHON inside a venv: its packages (torch) are not the system's; list them after the check venv's own.
"$BASE" -c 'import sys, sysconfig; p = sysconfig.get_paths(); sys.prefix != sys.base_prefix and print(p["purelib"]); sys.prefix != sys.base_prefix and p["platlib"] != p["purelib"] and print(p["platlib"])' > "$site/obe_base_venv.pth"
t0=$SECONDS
if ! "$BASE" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" --target "$site" -r "$pins" > "$VENV/pip.log" 2>&1; then
  echo "FAIL  setup           offline install of $pins: $(tail -3 "$VENV/pip.log" | tr '\n' ' ')"
  exit 1
fi
echo "PASS  setup           $(grep -c . "$pins") wheels from $WHEELS into $VENV in $((SECONDS - t0)) s (python $version, torch from the image)"
exec timeout --signal=TERM --kill-after=20 480 "$VENV/bin/python" bench/gpu_check.py "$@"
