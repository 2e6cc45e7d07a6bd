"""bench/gpu_check.sh --device cpu: the GPU acceptance check's dry run, through the install it does
on a GPU machine (a venv over this interpreter's packages, the wheelhouse's pins installed
offline with --no-deps into it). The wheelhouse is bench/wheelhouse when its pins for this
Python are the environment's, else one built in a temporary folder by bench/wheelhouse.sh (the
package registry, as the test extra's install uses; ~45 wheels for one Python).

Every part that can run without a GPU must pass (obe.train with grpo only, to save time); vLLM
and FSDP through accelerate are skipped there, with why. Wall time on 2 shared cores
(2026-12-07): 2.6 min at load 8-14 (6.4 min at load 15-22 with all three methods), of which
~40 s the offline install.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED_ON_CPU = {"sample-vllm": "vLLM needs a GPU", "trl-fsdp": "accelerate 1.15 runs FSDP only on GPUs"}


def wheelhouse(tmp_path: Path, env: dict) -> Path:
    version = "%d.%d" % sys.version_info[:2]
    pins = subprocess.run([sys.executable, "bench/gpu_check.py", "--requirements", version], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True).stdout
    built = REPO / "bench" / "wheelhouse"
    req = built / f"requirements-cp{version.replace('.', '')}.txt"
    if req.is_file() and req.read_text() == pins:
        return built
    fresh = tmp_path / "wheelhouse"
    res = subprocess.run(["bash", "bench/wheelhouse.sh", version], cwd=REPO, env=dict(env, OBE_WHEELHOUSE=str(fresh)),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return fresh


@pytest.mark.slow
def test_gpu_check_dry_run_installs_from_the_wheelhouse_and_passes(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OBE_CHECK_VENV=str(tmp_path / "venv"))
    env["OBE_WHEELHOUSE"] = str(wheelhouse(tmp_path, env))
    res = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu", "--work", str(tmp_path / "work"),
                          "--pretrain-steps", "40", "--train-steps", "2", "--questions", "8", "--methods", "grpo"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    lines = {m.group(2): (m.group(1), m.group(3)) for m in re.finditer(r"^(PASS|FAIL|SKIP)\s+(\S+)\s+(.*)$", res.stdout, re.M)}
    report = res.stdout[-6000:] + res.stderr[-3000:]
    assert res.returncode == 0, report
    parts = ["setup", "environment", "build-qwen2", "sample-vllm", "sample-hf", "sample-chat", "train-grpo", "train-trl",
             "train-trl-chat", "fsdp2", "trl-fsdp", "evaluate"]
    assert list(lines) == parts, report
    for part, (status, detail) in lines.items():
        if part in SKIPPED_ON_CPU:
            assert status == "SKIP" and SKIPPED_ON_CPU[part] in detail, (part, detail)
        else:
            assert status == "PASS", (part, detail)
    # the packages came from the wheelhouse, installed into the check's venv
    assert f"transformers from {tmp_path / 'venv'}" in lines["environment"][1]
    assert "snapshots/step_2 and final/ hold weights" in lines["train-trl-chat"][1]
