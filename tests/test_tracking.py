"""W&B tracking: mode resolution, offline runs read back, an unreachable server never fails."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from obe.core.tracking import NullTracker, resolve_mode, run_name, start_run

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
def test_offline_run_reads_back(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    _log_a_run(str(tmp_path))
    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    # One line of the job's log says the run is offline, where it is and how to upload it.
    folder = os.path.dirname(run_file)
    assert f"W&B run ucb__s1 ({folder.rsplit('-', 1)[1]}) is offline, in {folder}; upload it with: wandb sync {folder}" \
        in capsys.readouterr().err
    records = _read_records(run_file)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["run_group"] == "exp-test/ucb"  # W&B's default grouping averages a method's seeds
    assert run["job_type"] == "train"
    assert not run.get("resume")  # without run_id: a new run of wandb's own id, as for every stage
    assert run["display_name"] == "ucb__s1"
    config = {k: v for k, v in run["config"]["update"].items() if k != "_wandb"}
    assert config == {"method": "ucb", "coef": 0.2, "seed": 1, "experiment": "exp-test"}
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


# -- resuming one run ----------------------------------------------------------------------


def test_resumable_run_id_is_kept_on_resume_and_new_on_a_fresh_start(monkeypatch, tmp_path):
    import re

    from obe.core.tracking import RUN_ID_FILE, resumable_run_id

    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    first = resumable_run_id(tmp_path, resume=False)
    assert re.fullmatch(r"[0-9a-f]{16}", first) and FAKE_KEY[:8] not in first
    assert (tmp_path / RUN_ID_FILE).read_text() == first + "\n"
    assert resumable_run_id(tmp_path, resume=True) == first  # resume: the same run
    again = resumable_run_id(tmp_path, resume=False)  # fresh start (e.g. a config-change restart)
    assert again != first and resumable_run_id(tmp_path, resume=True) == again
    (tmp_path / RUN_ID_FILE).write_text("../../x?y\n")  # tampered: never passed to wandb
    fixed = resumable_run_id(tmp_path, resume=True)
    assert re.fullmatch(r"[0-9a-f]{16}", fixed) and (tmp_path / RUN_ID_FILE).read_text() == fixed + "\n"
    (tmp_path / RUN_ID_FILE).unlink()
    assert resumable_run_id(tmp_path, resume=True) != fixed
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_ID_FILE]  # no temporary file left


def test_start_run_rejects_a_malformed_run_id(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ValueError, match="run id"):
        start_run(stage="train", name="x", config={}, experiment="e", wandb_dir=str(tmp_path), run_id="a/b")


def test_a_resumable_run_leaves_a_wandb_core_inherited_from_a_parent():
    import os

    from obe.core.tracking import leave_inherited_service

    own = {"WANDB_SERVICE": f"3-{os.getpid()}-unix-/tmp/x/socket", "OTHER": "1"}
    leave_inherited_service(own)
    assert own == {"WANDB_SERVICE": f"3-{os.getpid()}-unix-/tmp/x/socket", "OTHER": "1"}
    inherited = {"WANDB_SERVICE": f"3-{os.getpid() + 1}-tcp-localhost-4242", "OTHER": "1"}
    leave_inherited_service(inherited)
    assert inherited == {"OTHER": "1"}
    leave_inherited_service(inherited)  # nothing to forget


def test_resumed_tracker_skips_steps_the_run_already_has(tmp_path):
    from obe.core.tracking import WandbTracker, relog_rows

    class FakeRun:
        starting_step = 4  # what wandb reports for a run resumed online whose last step is 3

        def __init__(self):
            self.logged = []

        def log(self, metrics, step=None):
            self.logged.append((step, metrics))

    run = FakeRun()
    tracker = WandbTracker(run, None, "online")
    rows = tmp_path / "metrics.jsonl"
    rows.write_text("".join(json.dumps({"step": s, "loss": s / 10, "kl": None}) + "\n" for s in range(1, 6)))
    relog_rows(tracker, rows)
    assert run.logged == [(4, {"step": 4, "loss": 0.4}), (5, {"step": 5, "loss": 0.5})]
    fresh = FakeRun()
    fresh.starting_step = 0
    relog_rows(WandbTracker(fresh, None, "offline"), rows)
    assert [s for s, _ in fresh.logged] == [1, 2, 3, 4, 5]


def _offline_segments(wandb_dir) -> dict[str, list[list[dict]]]:
    """run id -> the records of each offline run folder of that id, in start order (a folder
    without a ``.wandb`` file, from a process killed early, has none)."""
    out: dict[str, list[list[dict]]] = {}
    for d in sorted(glob.glob(str(wandb_dir / "wandb" / "offline-run-*"))):
        run_files = glob.glob(d + "/run-*.wandb")
        assert len(run_files) <= 1, run_files
        out.setdefault(d.rsplit("-", 1)[1], []).append(_read_records(run_files[0]) if run_files else [])
    return out


@pytest.mark.slow
def test_offline_resume_writes_a_second_segment_of_the_same_run(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("WANDB_MODE", "offline")
    for steps in (range(1, 4), range(3, 6)):  # the second start re-logs step 3
        tracker = start_run(stage="train", name="ucb__s1", config={"seed": 1}, experiment="e",
                            wandb_dir=str(tmp_path), run_id="abc123")
        for step in steps:
            tracker.log({"loss": float(step)}, step=step)
        tracker.finish()
        time.sleep(1.1)  # offline folders are named by the start second
    segments = _offline_segments(tmp_path)
    assert list(segments) == ["abc123"] and len(segments["abc123"]) == 2
    histories = []
    for records in segments["abc123"]:
        run = next(r["run"] for r in records if r["type"] == "run")
        # Both folders are the one run (resumed); `wandb sync` uploads each from its first row, so a
        # resumed trainer re-logs its kept rows first (relog_rows): the last folder is the whole history.
        assert run["run_id"] == "abc123" and run["resume"] is True
        histories.append([r["history"]["step"]["num"] for r in records if r["type"] == "history"])
    assert histories == [[1, 2, 3], [3, 4, 5]]


def test_an_unreachable_server_is_asked_once_and_the_run_goes_offline_at_once(monkeypatch, tmp_path, capsys):
    """On a compute node without internet: one quick connection check, a clear line, and the
    run is written offline without ever waiting on an online wandb.init."""
    import wandb

    from obe.core import tracking

    modes = []

    class FakeRun:
        starting_step = 0

        def finish(self):
            pass

    monkeypatch.setattr(wandb, "init", lambda mode, **kw: modes.append((mode, kw["tags"])) or FakeRun())
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("WANDB_TAGS", "paper-scale, qwen")
    monkeypatch.setattr(tracking, "_REACHABLE", {})
    asked = []
    real = tracking.server_reachable
    monkeypatch.setattr(tracking, "server_reachable", lambda url, t: asked.append(url) or real(url, t))
    for _ in range(2):
        tracker = start_run(stage="train", name="ucb__s1", config={}, experiment="e", wandb_dir=str(tmp_path),
                            tags=["ucb"])
        tracker.finish()
    assert [m for m, _ in modes] == ["offline", "offline"]
    assert modes[0][1] == ["paper-scale", "qwen", "ucb"]  # WANDB_TAGS (config.yaml's wandb.tags) + the stage's
    assert tracking._REACHABLE == {"http://127.0.0.1:9": False}  # the answer is kept for the process
    err = capsys.readouterr().err
    assert "W&B server http://127.0.0.1:9 unreachable within 3 s; writing this run offline" in err


def test_method_group_and_coef_in_the_run_config():
    from obe.core.tracking import run_group, wandb_config
    from obe.rl.methods import METHOD_NAMES

    assert run_group("exp", "ucb_con") == "exp/ucb_con" and run_group("exp") == "exp"
    for method in METHOD_NAMES:
        config = wandb_config({"method": method, "coef": 0.2, "seed": 0}, "exp")
        assert config["experiment"] == "exp" and config["seed"] == 0
        assert config["coef"] == (None if method == "grpo" else 0.2), method  # GRPO has no coefficient
    assert wandb_config({"coef": 0.2}, "exp", method="grpo") == {"coef": None, "experiment": "exp", "method": "grpo"}
    assert wandb_config({"rows": 3}, "exp") == {"rows": 3, "experiment": "exp"}  # not a method's run


@pytest.mark.slow
def test_log_evals_writes_a_run_beside_the_training_run(monkeypatch, tmp_path):
    """Offline, the evaluations are a run of their own (never a second folder of the training run's
    id, which `wandb sync` would upload over the training curves): same group and config, W&B's
    step = the training step, one row per step with every test set."""
    from obe import log_evals

    monkeypatch.setenv("WANDB_MODE", "offline")
    train_dir = tmp_path / "train" / "ucb_con__s1"
    train_dir.mkdir(parents=True)
    (train_dir / "config.json").write_text(json.dumps({"method": "ucb_con", "seed": 1, "steps": 100, "coef": 0.2}))
    (train_dir / "wandb_run_id").write_text("train0run1\n")
    summaries = []
    for step, p1 in ((0, 0.2), (100, 0.35), (50, 0.3)):
        for dataset in ("math500", "aime24"):
            path = tmp_path / f"s{step}_{dataset}.json"
            path.write_text(json.dumps({"pass_at_k": {"1": p1, "2": p1 + 0.1}, "maj_at_k": {"1": p1, "2": p1},
                                        "distinct_answers": 3.0, "answer_entropy": 1.1, "mean_length": 20.0,
                                        "frac_no_answer": 0.0, "frac_truncated": 0.0, "mean_at_n": p1, "n": 2}))
            summaries += ["--eval", f"{step}:{dataset}={path}"]
    out = tmp_path / "out.json"
    assert log_evals.main(["--train-dir", str(train_dir), *summaries, "--out", str(out), "--experiment", "e",
                           "--wandb-dir", str(tmp_path)]) == 0
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [r["step"] for r in rows] == [0, 50, 100]  # the base model first, as step 0
    assert rows[1]["eval/math500/pass@1"] == 0.3 and rows[1]["eval/aime24/pass@2"] == pytest.approx(0.4)
    assert {"eval/math500/maj@2", "eval/aime24/distinct_answers", "eval/math500/answer_entropy"} <= set(rows[0])
    segments = _offline_segments(tmp_path)
    assert list(segments) == [record["run_id"]] and record["run_id"] != "train0run1"
    (records,) = segments[record["run_id"]]
    run = next(r["run"] for r in records if r["type"] == "run")
    assert (run["run_group"], run["job_type"], run["display_name"]) == ("e/ucb_con", "eval", "ucb_con__s1__eval")
    config = run["config"]["update"]
    assert (config["method"], config["seed"], config["coef"], config["train_run_id"]) == ("ucb_con", 1, 0.2, "train0run1")
    history = [r["history"] for r in records if r["type"] == "history"]
    assert [h["step"]["num"] for h in history] == [0, 50, 100]
    assert [h["item"]["eval/aime24/pass@1"] for h in history] == [0.2, 0.3, 0.35]
    # The same evaluations logged again land in the same run; others in another one.
    assert log_evals.eval_run_id("train0run1", "ucb_con__s1__eval", rows) == record["run_id"]
    assert log_evals.eval_run_id("train0run1", "ucb_con__s1__eval", rows[:2]) != record["run_id"]
