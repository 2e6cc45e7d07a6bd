"""W&B tracking: mode resolution, offline runs read back, an unreachable server never fails."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys

import pytest

from obe.tracking import NullTracker, resolve_mode, run_name, start_run

FAKE_KEY = "k" * 40


def test_resolve_mode():
    assert resolve_mode({"WANDB_MODE": "disabled"}) == "disabled"
    assert resolve_mode({"WANDB_MODE": "offline"}, api_key=True) == "offline"
    assert resolve_mode({}, api_key=False) == "offline"
    assert resolve_mode({}, api_key=True) == "online"
    assert resolve_mode({"WANDB_MODE": ""}, api_key=False) == "offline"
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_mode({"WANDB_MODE": "onlne"})


def test_run_name():
    assert run_name("ucb_con", 2) == "ucb_con__s2"
    assert run_name("batch", 0, step=100) == "batch__s0__step100"


def test_disabled_gives_null_tracker(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = start_run(stage="train", name="grpo__s0", config={}, experiment="e", wandb_dir=str(tmp_path))
    assert isinstance(tracker, NullTracker)
    tracker.log({"loss": 1.0}, step=0)
    tracker.finish()
    assert not list(tmp_path.iterdir())


def _read_records(run_file: str) -> list[dict]:
    wandb_cli = shutil.which("wandb", path=str(__import__("pathlib").Path(sys.executable).parent))
    out = subprocess.run([wandb_cli, "leet", "inspect", "--json", run_file], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _log_a_run(wandb_dir: str) -> None:
    tracker = start_run(
        stage="train",
        name="ucb__s1",
        config={"method": "ucb", "coef": 0.2, "seed": 1},
        experiment="exp-test",
        wandb_dir=wandb_dir,
        tags=["smoke"],
    )
    for step in range(3):
        tracker.log({"loss": 1.0 / (step + 1), "reward": 0.1 * step}, step=step)
    tracker.finish()


@pytest.mark.slow
def test_offline_run_reads_back(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    _log_a_run(str(tmp_path))
    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = _read_records(run_file)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["run_group"] == "exp-test"
    assert run["job_type"] == "train"
    assert run["display_name"] == "ucb__s1"
    config = run["config"]["update"]
    assert config["method"] == "ucb" and config["coef"] == 0.2 and config["seed"] == 1
    history = [r["history"] for r in records if r["type"] == "history"]
    assert [h["step"]["num"] for h in history] == [0, 1, 2]  # one step axis
    assert [h["item"]["loss"] for h in history] == pytest.approx([1.0, 0.5, 1 / 3])
    assert all({"loss", "reward"} <= set(h["item"]) for h in history)
    # The API key never lands in the run's files.
    for path in glob.glob(str(tmp_path / "wandb" / "**" / "*"), recursive=True):
        if not path.endswith((".wandb",)) and not __import__("os").path.isdir(path):
            assert FAKE_KEY not in open(path, errors="ignore").read(), path
    assert FAKE_KEY.encode() not in open(run_file, "rb").read()


@pytest.mark.slow
def test_unreachable_server_falls_back_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("OBE_WANDB_INIT_TIMEOUT", "5")
    tracker = start_run(stage="evaluate", name="grpo__s0__step10", config={}, experiment="e", wandb_dir=str(tmp_path))
    assert tracker.mode in ("offline", "disabled")
    tracker.log({"pass@1": 0.5}, step=0)
    tracker.finish()


@pytest.mark.slow
def test_data_stage_logs_its_manifest_counts(monkeypatch, tmp_path):
    from obe import data

    monkeypatch.setenv("WANDB_MODE", "offline")
    rc = data.main(["--source", "synthetic", "--split", "test", "--n", "8", "--seed", "0",
                    "--out", str(tmp_path / "syn.jsonl"), "--experiment", "exp-data",
                    "--wandb-dir", str(tmp_path / "wb"), "--wandb-name", "data__syn"])
    assert rc == 0
    (run_file,) = glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = _read_records(run_file)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert (run["run_group"], run["job_type"], run["display_name"]) == ("exp-data", "prepare_data", "data__syn")
    summaries = [r["summary"] for r in records if r["type"] == "summary"]
    assert any("written" in json.dumps(s) for s in summaries)
