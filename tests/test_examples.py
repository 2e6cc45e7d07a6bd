"""examples/ run as a user runs them: each prints its result line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_exploration_grpo_example_trains_and_prints_pass_at_k(tmp_path):
    """The public trainer in a plain TRL script (examples/exploration_grpo.py): it trains, fills
    the count table and prints pass@1 and pass@8 before and after."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_WAIT_POLICY": "PASSIVE"}
    res = subprocess.run([sys.executable, str(REPO / "examples" / "exploration_grpo.py"), "--method", "batch",
                          "--steps", "2", "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    line = res.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"batch c=1, 2 steps; 32 test questions x 8 samples: pass@1 (\S+) -> (\S+), "
                     r"pass@8 (\S+) -> (\S+); count table N\(x, a\): (\d+) \(question, answer\) pairs", line)
    assert m, line
    assert all(0.0 <= float(x) <= 1.0 for x in m.groups()[:4]) and float(m[1]) <= float(m[3])
    assert int(m[5]) > 0  # 2 steps x 4 questions x 8 samples were counted


def test_the_public_trainer_refuses_reward_functions_and_batch_scaling():
    pytest.importorskip("trl")
    from types import SimpleNamespace

    from obe import ExplorationConfig, ExplorationGRPOTrainer
    from obe.engines.trl_trainer import trl_advantages

    with pytest.raises(TypeError, match="takes no reward_funcs"):
        ExplorationGRPOTrainer(model="x", reward_funcs=[len], exploration=ExplorationConfig(method="grpo"))
    assert trl_advantages(SimpleNamespace(scale_rewards="group")).scale == "group"
    assert trl_advantages(SimpleNamespace(scale_rewards="none")).scale == "none"
    with pytest.raises(ValueError, match="per group"):
        trl_advantages(SimpleNamespace(scale_rewards="batch"))
