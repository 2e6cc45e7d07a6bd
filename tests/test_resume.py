"""Resuming a training run after faults (obe.train + obe.core.checkpoint): a corrupted newest
checkpoint, a project moved to another folder, a shortened run, a config change, a failed resume.
Nothing computed is ever deleted: what cannot be used is moved aside."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from obe.core import checkpoint as ckpt
from obe import train as T
from obe.training.run_dir import done_record
from test_train import MAX_NEW, REPO, assert_same_run, config, env, read_rows, stable, straight, weights  # noqa: F401


def argv(env, out, steps=6, **extra) -> list[str]:
    args = ["--model", env["model"], "--train-data", env["data"], "--out", str(out), "--method", "ucb",
            "--steps", str(steps), "--batch-questions", "4", "--n", "4", "--max-new-tokens", str(MAX_NEW),
            "--lr", "3e-3", "--threads", "1", "--checkpoint-every", "2", "--wandb-dir", str(out)]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def copy_run(straight, dest: Path) -> Path:
    shutil.copytree(straight, dest)
    return dest


def test_straight_run_has_verifying_checkpoints_with_model_identity(straight):
    cps = ckpt.list_checkpoints(straight / "checkpoints")
    assert [p.name for p in cps] == ["step_4", "step_6"]  # keep_checkpoints 2
    for p in cps:
        assert ckpt.verify(p) is None
        assert ckpt.read_state(p)["model_identity"].startswith("sha256:")


@pytest.mark.parametrize("victim", ["optimizer.pt", "model/model.safetensors", "state.json"])
def test_corrupt_newest_checkpoint_is_skipped_and_the_run_finishes_as_straight(env, straight, tmp_path, capsys,
                                                                                 victim):
    out = copy_run(straight, tmp_path / "run")
    f = out / "checkpoints" / "step_6" / victim
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])  # what a preempted copy leaves
    assert T.main(argv(env, out)) == 0
    err = capsys.readouterr().err
    assert f"checkpoint step_6 skipped: {f}:" in err and "truncated" in err
    assert "resuming from" in err and "step_4" in err and "Traceback" not in err
    # the bad checkpoint is kept, with the reason beside it; the run re-made step_6 from step_4
    aside = [p for p in (out / "checkpoints" / ckpt.CORRUPT_DIR).iterdir() if p.is_dir()]
    assert len(aside) == 1 and aside[0].name.startswith("step_6.")
    assert victim in aside[0].with_name(aside[0].name + ".why.txt").read_text()
    assert ckpt.verify(out / "checkpoints" / "step_6") is None
    assert_same_run(straight, out)
    assert done_record(out)["steps"] == 6


def test_finished_run_with_corrupt_newest_checkpoint_is_finished_again(env, straight, tmp_path, capsys):
    """The DAG asks again (done.json gone after a failed job): the run re-finishes from step_4,
    with the same result, instead of counting as unfinished."""
    out = copy_run(straight, tmp_path / "run")
    (out / "checkpoints" / "step_6" / "rng.pt").write_bytes(b"")
    assert T.main(argv(env, out)) == 0
    assert_same_run(straight, out)
    capsys.readouterr()
    assert T.main(["--write-done", str(out)]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["steps"] == 6 and done["metrics_rows"] == 6


def test_moved_project_resumes_instead_of_starting_over(env, straight, tmp_path, capsys):
    """Model, data and run copied to another folder (another scratch filesystem): asking for more
    steps resumes from step_6."""
    moved = tmp_path / "elsewhere"
    shutil.copytree(Path(env["model"]), moved / "model")
    shutil.copy2(env["data"], moved / "train.jsonl")
    out = copy_run(straight, moved / "run")
    moved_env = {"model": str(moved / "model"), "data": str(moved / "train.jsonl")}
    assert T.main(argv(moved_env, out, steps=8)) == 0
    err = capsys.readouterr().err
    assert "resuming from" in err and "step 6" in err and "starting over" not in err
    rows = read_rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert stable(rows[:6]) == stable(read_rows(straight / "metrics.jsonl"))
    assert not (out / "superseded").exists()


def test_other_initial_model_is_a_config_change(env, straight, tmp_path):
    other = tmp_path / "other_model"
    shutil.copytree(Path(env["model"]), other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["rms_norm_eps"] = cfg.get("rms_norm_eps", 1e-6) * 2  # same path layout, different model
    (other / "config.json").write_text(json.dumps(cfg))
    out = copy_run(straight, tmp_path / "run")
    with pytest.raises(SystemExit, match="another initial model"):
        T.train(config({**env, "model": str(other)}, out, method="ucb", steps=8))


def test_restart_sets_the_old_run_aside(env, straight, tmp_path, capsys):
    out = copy_run(straight, tmp_path / "run")
    T.train(config(env, out, method="ucb", steps=2, coef=0.3, on_config_change="restart"))
    err = capsys.readouterr().err
    assert "different config (coef); starting over (the previous run is kept in" in err
    (aside,) = (out / "superseded").iterdir()
    assert "coef" in (aside / "why.txt").read_text()
    assert sorted(p.name for p in ckpt.list_checkpoints(aside / "checkpoints")) == ["step_4", "step_6"]
    assert (aside / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    assert (aside / "final" / "model.safetensors").is_file()
    assert [r["step"] for r in read_rows(out / "metrics.jsonl")] == [1, 2]


def test_shortened_run_sets_later_checkpoints_aside_and_ends_at_its_step(env, straight, tmp_path, capsys):
    out = copy_run(straight, tmp_path / "run")
    assert T.main(argv(env, out, steps=4)) == 0
    assert "step_6 lie past --steps 4" in capsys.readouterr().err
    (aside,) = (out / "superseded").iterdir()
    assert (aside / "checkpoints" / "step_6").is_dir()
    assert (aside / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    assert [r["step"] for r in read_rows(out / "metrics.jsonl")] == [1, 2, 3, 4]
    final = weights(out)
    from safetensors.torch import load_file

    at4 = load_file(str(straight / "checkpoints" / "step_4" / "model" / "model.safetensors"))
    assert all(torch.equal(final[k], at4[k]) for k in at4)
    assert done_record(out)["steps"] == 4


def test_failed_resume_prints_one_line_naming_the_file(env, straight, tmp_path):
    out = copy_run(straight, tmp_path / "run")
    metrics = out / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:10])  # the log lost rows the checkpoint counts on
    proc = subprocess.run([sys.executable, "-m", "obe.train", *argv(env, out, steps=8)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("obe.train: error: ") and str(metrics) in errors[0] and "restore it" in errors[0]
    assert ckpt.verify(out / "checkpoints" / "step_6") is None  # nothing was touched


def test_done_record_lists_only_planned_snapshots(straight, tmp_path):
    out = copy_run(straight, tmp_path / "run")
    cfg = json.loads((out / "config.json").read_text())
    cfg["save_steps"] = [2, 6]
    (out / "config.json").write_text(json.dumps(cfg))
    for step in (2, 4, 6):
        shutil.copytree(out / "final", out / "snapshots" / f"step_{step}")
    done = done_record(out)
    assert [Path(p).name for p in done["snapshots"]] == ["step_2", "step_6"]
    assert [Path(p).name for p in done["unplanned_snapshots"]] == ["step_4"]
