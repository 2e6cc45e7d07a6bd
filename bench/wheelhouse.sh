#!/usr/bin/env bash
# Build bench/wheelhouse/: the wheels bench/gpu_check.sh installs offline on a GPU machine whose
# image brings its own torch and reaches no package registry. Run it here (registry reachable),
# with the project venv, before the GPU check; the folder is ignored by git and travels with the
# working tree (carry: bench/wheelhouse).
#
#   bash bench/wheelhouse.sh                  # wheels for CPython 3.11, 3.12 and 3.13 (x86_64 Linux; TRL 1.16 needs >= 3.11)
#   bash bench/wheelhouse.sh 3.12             # only for the image's Python
#   OBE_WHEELHOUSE=/tmp/wh bash bench/wheelhouse.sh 3.11   # another folder (the CI test's)
#
# What goes in: the exact versions this venv runs (transformers, trl, accelerate, peft, datasets,
# tokenizers, safetensors, huggingface_hub, math-verify, pyyaml, jsonschema and their
# dependencies; `python bench/gpu_check.py --requirements 3.11` prints the list). What does not:
# torch and what torch itself requires (the image's torch brings those), vLLM (no wheel without
# its own CUDA torch), and numpy, pandas and pyarrow (17 + 12 + 55 MB: more than the 64 MiB that
# travel with the tree; the check expects them from the image and says which parts skip without).
# One requirements-cpXY.txt per Python lists what gpu_check.sh installs with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OBE_WHEELHOUSE:-bench/wheelhouse}
VERSIONS=${*:-3.11 3.12 3.13}
rm -rf "$OUT"
mkdir -p "$OUT"
for v in $VERSIONS; do
  tag="cp${v/./}"
  "$PY" bench/gpu_check.py --requirements "$v" > "$OUT/requirements-$tag.txt"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest "$OUT" \
    --python-version "$v" --implementation cp --abi "$tag" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -r "$OUT/requirements-$tag.txt"
done
echo "wheelhouse $OUT: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1) (Python ${VERSIONS})"
