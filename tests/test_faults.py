"""Faults a cluster user meets, at the pipeline level: dropped data rows (counted on the console
and in report.html; an error under data.strict), evaluation steps outside training, outputs of
steps no longer planned (listed as stale), and a kill -9 of the whole smoke DAG during training
followed by the recovery commands of the README, which must end with every output equal to an
uninterrupted run's.

The output comparison reuses tests/test_slurm.py's helpers (a copied repository tree per run,
outputs compared without timings, paths and run ids)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from obe.data import dropped_by_kind, dropped_rows_line, reason_kind
from obe.report import build_report, console_summary, stale_outputs
from test_slurm import (BEFORE_GRADING, copy_tree, grading_diff_only_timeouts, grading_timeout_differences,
                        result_files, run_env, same_output, snakemake_cmd, tail)

SMOKE = ["--configfile", "configs/smoke.yaml"]
R = "results/smoke"
SEAMS = Path(__file__).resolve().parent / "seams.py"  # training callbacks through which a test holds a run

# A test set with one malformed JSON line and one row without an answer (MATH-500 layout).
BAD_TEST_SET = "\n".join([
    json.dumps({"problem": "What is 2+3?", "answer": "5", "unique_id": "a"}),
    '{"problem": "What is 1+1?", "answer": ',
    json.dumps({"problem": "What is 3*3?", "unique_id": "c"}),
    json.dumps({"problem": "What is 4+4?", "answer": "8", "unique_id": "d"}),
]) + "\n"


def manifest_with(dropped: list[dict], read: int = 10) -> dict:
    return {"counts": {"read": read, "excluded": 0, "dropped": len(dropped), "kept": read - len(dropped),
                       "written": read - len(dropped)}, "dropped": dropped}


# -- units ------------------------------------------------------------------------------------


def test_reason_kinds_group_the_manifest_reasons():
    assert reason_kind("malformed JSON: Expecting value (column 12)") == "malformed JSON"
    assert reason_kind("duplicate id math:7 (first at x.jsonl line 3)") == "duplicate id"
    assert reason_kind("missing or non-string 'answer'") == "missing or non-string 'answer'"
    m = manifest_with([{"file": "t.jsonl", "line": 2, "reason": "malformed JSON: Expecting value (column 9)"},
                       {"file": "t.jsonl", "line": 3, "reason": "missing or non-string 'answer'"},
                       {"file": "t.jsonl", "line": 5, "reason": "malformed JSON: Unterminated string (column 3)"}])
    assert dropped_by_kind(m) == {"malformed JSON": 2, "missing or non-string 'answer'": 1}
    line = dropped_rows_line("bad", m, "data/bad.manifest.json")
    assert line.startswith("data bad: 3 of 10 rows dropped (malformed JSON x2, missing or non-string 'answer' x1)")
    assert "data/bad.manifest.json" in line and "data.strict: true" in line
    assert dropped_rows_line("ok", manifest_with([]), "m.json") is None


def test_stale_outputs_are_the_unplanned_runs_steps_and_datasets(tmp_path):
    planned = {("base", 0, "synthetic"), ("base", 0, "train"), ("grpo__s0", 2, "synthetic"),
               ("grpo__s0", 6, "synthetic")}
    for rel in ["samples/base/step0/train.jsonl", "samples/base/step0/synthetic.jsonl.meta.json",
                "samples/grpo__s0/step4/synthetic.jsonl", "samples/grpo__s0/step4/synthetic.jsonl.meta.json",
                "graded/grpo__s0/step4/synthetic.jsonl", "eval/grpo__s0/step4/synthetic/summary.json",
                "eval/grpo__s0/step6/synthetic/summary.json", "eval/grpo__s0/step6/math500/summary.json",
                "train/grpo__s0/snapshots/step_4/config.json", "train/grpo__s0/snapshots/step_2/config.json",
                "train/ucb__s0/done.json"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert stale_outputs(tmp_path, planned) == [
        "eval/grpo__s0/step4/synthetic", "eval/grpo__s0/step6/math500", "graded/grpo__s0/step4/synthetic",
        "samples/grpo__s0/step4/synthetic", "train/grpo__s0/snapshots/step_4", "train/ucb__s0"]


def _analysis_dir(tmp_path) -> Path:
    adir = tmp_path / "analysis"
    adir.mkdir()
    (adir / "analysis.json").write_text(json.dumps({"meta": {}, "figures": [], "tables": []}))
    return adir


def test_report_shows_dropped_rows_per_dataset_and_stale_outputs(tmp_path):
    adir = _analysis_dir(tmp_path)
    bad = tmp_path / "bad.manifest.json"
    bad.write_text(json.dumps(manifest_with(
        [{"file": "/data/bad.jsonl", "line": 2, "reason": "malformed JSON: Expecting value (column 9)"},
         {"file": "/data/bad.jsonl", "line": 3, "reason": "missing or non-string 'answer'"}], read=4)))
    good = tmp_path / "train.manifest.json"
    good.write_text(json.dumps(manifest_with([], read=32)))
    html = build_report(adir, manifests={"train": good, "bad": bad}, stale=["eval/grpo__s0/step4/synthetic"])
    section = html.split("<section id='inputs'>", 1)[1].split("</section>", 1)[0]
    assert "<td>bad</td><td>4</td><td>0</td><td>2</td><td>2</td>" in section
    assert "malformed JSON x1; missing or non-string &#x27;answer&#x27; x1" in section
    assert "bad.jsonl</code> line 2: malformed JSON" in section and "line 3: missing" in section
    assert "<td>train</td><td>32</td><td>0</td><td>0</td><td>32</td><td>none</td>" in section
    assert "1 output(s)</b> on disk" in section and "eval/grpo__s0/step4/synthetic" in section
    head = html.split("<nav>", 1)[0]
    assert "2 data row(s) dropped; 1 stale output(s) on disk" in head
    clean = build_report(adir, manifests={"train": good}, stale=[])
    assert "Check:" not in clean.split("<nav>", 1)[0] and "every sample, grade, evaluation" in clean


def test_console_summary_names_dropped_rows_stale_outputs_and_strict_refusals(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.manifest.json").write_text(json.dumps(manifest_with(
        [{"file": "b.jsonl", "line": 2, "reason": "empty answer"}], read=3)))
    (tmp_path / "eval" / "grpo__s0" / "step4" / "synthetic").mkdir(parents=True)
    console_summary(tmp_path, ["train", "bad"], [("grpo__s0", 2, "synthetic")])
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("obe: data bad: 1 of 3 rows dropped (empty answer x1)")
    assert err[1].startswith("obe: 1 output(s) under") and "eval/grpo__s0/step4/synthetic" in err[1]
    (tmp_path / "logs" / "prepare_data").mkdir(parents=True)
    (tmp_path / "logs" / "prepare_data" / "train.log").write_text(
        "error: t.jsonl line 2: malformed JSON: x\nerror: 1 bad row(s); nothing written (--strict)\n")
    console_summary(tmp_path, ["train"], [("grpo__s0", 4, "synthetic")], failed=True)
    err = capsys.readouterr().err.splitlines()
    assert err == ["obe: data train: error: t.jsonl line 2: malformed JSON: x",
                   "obe: data train: error: 1 bad row(s); nothing written (--strict)"]


# -- the DAG ----------------------------------------------------------------------------------


def preset(folder: Path, name: str, values: dict) -> str:
    """A config file merged over the smoke preset (--config cannot set nested lists or booleans)."""
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    return str(path)


def smk(tree: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*snakemake_cmd(), *args], cwd=tree, env=run_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return copy_tree(tmp_path_factory.mktemp("faults") / "repo")


def test_evaluation_step_beyond_training_fails_the_dry_run_with_its_key(tree, tmp_path):
    res = smk(tree, "-n", "--cores", "1", *SMOKE, preset(tmp_path, "steps", {"evaluation": {"steps": [2, 5]}}))
    assert res.returncode != 0
    assert "config error at evaluation.steps.1: step 5 is outside (0, train.steps = 4]" in res.stdout + res.stderr


def test_dropped_rows_reach_the_console_and_strict_mode_refuses(tree, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(BAD_TEST_SET)
    bad_set = {"source": "math500", "path": str(bad)}
    target = f"{R}/data/bad.manifest.json"
    res = smk(tree, target, "--cores", "1", *SMOKE, preset(tmp_path, "bad", {"data": {"test": {"bad": bad_set}}}))
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    line = next(line for line in out.splitlines() if line.startswith("obe: data bad:"))
    assert "2 of 4 rows dropped (malformed JSON x1, missing or non-string 'answer' x1)" in line
    assert f"{R}/data/bad.manifest.json" in line
    # data.strict: the job fails and the console names each bad row by file and line
    strict = preset(tmp_path, "strict", {"data": {"strict": True, "test": {"bad": bad_set}}})
    res = smk(tree, target, "--cores", "1", *SMOKE, strict)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert f"obe: data bad: error: {bad} line 2: malformed JSON" in out
    assert f"obe: data bad: error: {bad} line 3: missing or non-string 'answer'" in out


def _without_run_ids(obj):
    if isinstance(obj, dict):
        return {k: _without_run_ids(v) for k, v in obj.items() if k != "run_id"}
    if isinstance(obj, list):
        return [_without_run_ids(v) for v in obj]
    return obj


def same_result(name: str, a: bytes, b: bytes) -> bool:
    """test_slurm.same_output, also without W&B run ids (random per run by design)."""
    if name.endswith(".json") and a != b:
        try:
            a, b = (json.dumps(_without_run_ids(json.loads(x)), sort_keys=True).encode() for x in (a, b))
        except ValueError:
            pass
    return same_output(name, a, b)


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_kill_9_during_training_then_recovery_commands_give_the_uninterrupted_outputs(tmp_path):
    """The README's "Re-running" commands after `kill -9` of the DAG's process group at a random
    moment of training: --unlock, then the run again (with --rerun-incomplete where Snakemake
    asks for it). Then, with train.steps raised, the old last step's outputs are named as stale."""
    ref_tree, fault_tree = copy_tree(tmp_path / "ref"), copy_tree(tmp_path / "fault")
    res = smk(ref_tree, "--cores", "2", *SMOKE)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    # the smoke preset makes real updates for every method (configs/smoke.yaml), so the kill
    # below interrupts (and the resume must reproduce) training that changes the weights
    for run_dir in sorted((ref_tree / R / "train").iterdir()):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert any(r["reward"] > 0 and r["grad_norm"] > 0 for r in rows), (run_dir.name, rows)

    seed = random.randrange(10**6)
    delay = random.Random(seed).uniform(0.0, 2.0)
    log = tmp_path / "fault.log"
    # On an idle machine a smoke run trains in about a second, so a kill up to 2 s in could come
    # after training ended: the fresh grpo run waits after step 3 (between its checkpoints at
    # steps 2 and 4) until the kill, so at least one run is always cut mid-way; the other runs
    # are killed wherever the random delay finds them. The resumed run does not wait.
    hold = {"train": {"callbacks": [f"{SEAMS}:HoldAfterStep=" + json.dumps(
        {"method": "grpo", "step": 3, "once": str(tmp_path / "held")})]}}  # a fresh rerun (killed before step 2) must not wait
    fault = [*SMOKE, preset(tmp_path, "hold", hold)]  # the same options for the killed run and its recovery
    with open(log, "w") as fh:
        # a process group of its own, as a batch job's: the kill takes Snakemake and every job
        proc = subprocess.Popen([*snakemake_cmd(), "--cores", "2", *fault], cwd=fault_tree, env=run_env(),
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            metrics = fault_tree / R / "train"
            while not any(p.stat().st_size for p in metrics.glob("*/metrics.jsonl")):
                assert proc.poll() is None, f"the DAG ended before training\n{tail(log)}"
                assert time.monotonic() < deadline, f"training did not start\n{tail(log)}"
                time.sleep(0.05)
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            _stop_group(proc)
    unfinished = [p.name for p in (fault_tree / R / "train").iterdir() if not (p / "done.json").exists()]
    assert unfinished, f"the kill (seed {seed}, {delay:.2f} s into training) came after training ended"

    # the README's recovery commands, in order
    res = smk(fault_tree, "--unlock", "--cores", "2", *fault)
    assert res.returncode == 0, res.stderr[-3000:]
    res = smk(fault_tree, "--cores", "2", *fault)
    asked = "--rerun-incomplete" in res.stdout + res.stderr
    if res.returncode != 0 and asked:
        res = smk(fault_tree, "--cores", "2", *fault, "--rerun-incomplete")
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert not list((fault_tree / R).rglob("corrupt")) and not list((fault_tree / R).rglob("superseded"))

    ref_files = result_files(ref_tree / R, ref_tree)
    fault_files = result_files(fault_tree / R, fault_tree)
    assert sorted(ref_files) == sorted(fault_files), "the runs wrote different files"
    differing = [n for n in ref_files if not same_result(n, ref_files[n], fault_files[n])]
    if differing:  # obe.grading's wall-clock limit may grade one answer "timeout" under load (test_slurm.py)
        timeouts = grading_timeout_differences(ref_files, fault_files)
        unexplained = [n for n in differing if n.startswith(BEFORE_GRADING)] + [
            n for n in differing if n.startswith("graded/") and not grading_diff_only_timeouts(ref_files[n], fault_files[n])]
        assert timeouts and not unexplained, f"kill (seed {seed}, {delay:.2f} s) changed {differing}"
        warnings.warn(f"outputs differ only through load-dependent grading timeouts: {timeouts}")
    print(f"killed {delay:.2f} s into training (seed {seed}), unfinished {unfinished}; "
          f"--rerun-incomplete {'was' if asked else 'was not'} asked for")

    # more steps: training resumes (no restart), the old last step's outputs are named as stale
    res = smk(ref_tree, "--cores", "2", *SMOKE, preset(tmp_path, "longer", {"train": {"steps": 6}}))
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    out = res.stdout + res.stderr
    for run in ("grpo__s0", "batch__s0"):
        train_log = (ref_tree / R / "logs" / "train" / f"{run}.log").read_text()
        assert "resuming from" in train_log and "starting over" not in train_log
        done = json.loads((ref_tree / R / "train" / run / "done.json").read_text())
        assert [Path(p).name for p in done["snapshots"]] == ["step_2", "step_6"]
        assert [Path(p).name for p in done["unplanned_snapshots"]] == ["step_4"]
    assert "belong to runs or steps the configuration no longer plans" in out
    report = (ref_tree / R / "report.html").read_text()
    assert "eval/grpo__s0/step4/synthetic" in report and "stale output(s) on disk" in report
