"""RL training stage (obe.train): methods, metrics, c = 0 equivalence, kill/resume, SIGTERM, NaN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from obe.core import checkpoint as ckpt
from obe import train as T
from obe.training.config import TrainConfig, build_parser, resolve_config
from obe.training.metrics import METRICS, TIMING_KEYS
from obe.training.numerics import batch_indices, lr_lambda
from obe.core.records import write_jsonl
from obe.tasks.synthetic import make_split

REPO = Path(__file__).resolve().parents[1]
MAX_NEW = 48


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The embedded smoke base model (briefly pre-trained on the synthetic task) and 12 training
    questions whose gold answer is RELABELLED to the model's most frequent answer (seen in 2..12
    of 16 samples), so groups have mixed rewards and plain GRPO gets a nonzero gradient."""
    from collections import Counter

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obe.base_model import build, sample_completions
    from obe.grading.latex import last_boxed

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("train")
    model = root / "model"
    build(model, seed=0, size="smoke", threads=1, steps=150, eval_questions=0, eval_samples=0)
    pool = make_split("train", 40, seed=0)
    m, tok = AutoModelForCausalLM.from_pretrained(model), AutoTokenizer.from_pretrained(model)
    comps = sample_completions(m, tok, [r.problem for r in pool], 16, max_new_tokens=MAX_NEW, seed=0)
    records = []
    for r, cs in zip(pool, comps):
        top = Counter(a for a in map(last_boxed, cs) if a).most_common(1)
        if top and 2 <= top[0][1] <= 12:
            records.append(replace(r, answer=top[0][0]))
    assert len(records) >= 12
    data = root / "train.jsonl"
    write_jsonl(str(data), records[:12])
    return {"model": str(model), "data": str(data), "root": root}


def config(env, out, **kw) -> TrainConfig:
    base = dict(model=env["model"], train_data=env["data"], out=str(out), steps=3, batch_questions=4, n=4,
                max_new_tokens=MAX_NEW, lr=3e-3, threads=1, checkpoint_every=2, wandb_dir=str(out))
    base.update(kw)
    return TrainConfig(**base)


def weights(out) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(out) / "final" / "model.safetensors"))


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def stable(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def assert_same_run(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert stable(read_rows(Path(a) / "metrics.jsonl")) == stable(read_rows(Path(b) / "metrics.jsonl"))
    assert (Path(a) / "rollouts.jsonl").read_bytes() == (Path(b) / "rollouts.jsonl").read_bytes()


@pytest.fixture(scope="module")
def straight(env):
    """6 uninterrupted ucb steps: the reference for the resume tests."""
    out = env["root"] / "straight"
    T.train(config(env, out, method="ucb", steps=6))
    return out


# -- CLI ---------------------------------------------------------------------------------


def test_help_documents_every_option_and_list_metrics(capsys):
    text = build_parser().format_help()
    for f in fields(TrainConfig):  # one flag per field; the list of callbacks is a repeatable --callback
        assert "--" + ("callback" if f.name == "callbacks" else f.name.replace("_", "-")) in text
    assert T.main(["--list-metrics"]) == 0
    printed = capsys.readouterr().out
    assert all(k in printed for k in METRICS)


def test_yaml_config_and_unknown_key(env, tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("method: ucb_con\ncoef: 0.5\nsave_steps: [2, 1]\ngate_solved: false\n")
    cfg, _ = resolve_config(["--config", str(good), "--model", env["model"], "--train-data", env["data"],
                               "--out", str(tmp_path / "o"), "--coef", "0.1"])
    assert (cfg.method, cfg.coef, cfg.save_steps, cfg.gate_solved) == ("ucb_con", 0.1, (1, 2), False)
    assert cfg.exploration().b0 == 0.5 and cfg.loss().eps_high == 0.28
    bad = tmp_path / "bad.yaml"
    bad.write_text("methd: ucb\n")
    with pytest.raises(SystemExit, match="unknown key 'methd'.*allowed keys: .*method"):
        resolve_config(["--config", str(bad), "--model", "m", "--train-data", "d", "--out", "o"])
    with pytest.raises(SystemExit, match="invalid config"):
        resolve_config(["--model", "m", "--train-data", "d", "--out", "o", "--eps-low", "2"])


def test_batch_indices_epochs_and_lr_schedule():
    idx = batch_indices(10, 0, 25, seed=3)
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:20]) == list(range(10))
    assert idx[:10] != idx[10:20]  # a fresh shuffle per epoch
    assert batch_indices(10, 7, 5, seed=3) == idx[7:12]
    f = lr_lambda(TrainConfig(steps=10, warmup_steps=2, lr_schedule="cosine"))
    assert [round(f(i), 6) for i in (0, 1, 2)] == [0.5, 1.0, 1.0] and f(10) == pytest.approx(0.0)
    # mu updates per batch share one schedule step: the cosine still ends at the last batch
    g = lr_lambda(TrainConfig(steps=10, warmup_steps=2, lr_schedule="cosine", mu=3))
    assert g(10) == pytest.approx(0.0) and g(6) == pytest.approx(f(6))


# -- training ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["grpo", "ucb", "ucb_mean", "ucb_con", "batch"])
def test_each_method_runs_and_logs_every_key(env, tmp_path, method):
    out = tmp_path / method
    summary = T.train(config(env, out, method=method, steps=2, save_steps=(1,)))
    assert summary["steps"] == 2
    rows = read_rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert set(r) == set(METRICS)
        assert r["loss"] is not None and r["grad_norm"] >= 0 and 0 <= r["reward"] <= 1
    rollouts = read_rows(out / "rollouts.jsonl")
    assert len(rollouts) == 2 * 4 * 4
    assert {"question_id", "step", "sample_index", "outcome_key", "correct"} <= set(rollouts[0])
    for d in ("final", "snapshots/step_1", "checkpoints/step_2/model"):
        assert (out / d / "model.safetensors").is_file() and (out / d / "tokenizer.json").is_file(), d
    assert json.loads((out / "config.json").read_text())["method"] == method
    if method in ("ucb", "ucb_mean", "ucb_con"):
        state = ckpt.read_state(out / "checkpoints" / "step_2")
        assert sum(sum(r.values()) for r in state["counts"]["counts"].values()) == 2 * 4 * 4


@pytest.mark.parametrize("opts", [
    dict(method="ucb_mean", leave_one_out=True, gate_solved=False, count_before_update=False, mask_answer_tokens=False),
    dict(method="ucb", bonus_in_reward=True, agg="seq_mean_token_mean"),
])
def test_exploration_options_run(env, tmp_path, opts):
    out = tmp_path / "x"
    T.train(config(env, out, steps=2, **opts))
    assert len(read_rows(out / "metrics.jsonl")) == 2
    if opts.get("bonus_in_reward"):  # the bonus went into the reward: nothing left to add afterwards
        assert all(r["bonus/max"] == 0 for r in read_rows(out / "metrics.jsonl"))


@pytest.mark.parametrize("engine", ["lean", "hf"])
def test_beta_mu_micro_batch_options_run(env, tmp_path, engine, capsys):
    out = tmp_path / "opts"
    # micro_batch 5 with n = 4 cuts groups across micro-batches (the lean forward shares a
    # prompt only between consecutive rows that have it)
    T.train(config(env, out, method="batch", steps=2, beta=0.05, mu=2, micro_batch=5, agg="dr_grpo",
                   scale="none", std="population", lr_schedule="cosine", warmup_steps=1, engine=engine))
    assert f"engine {engine}" in capsys.readouterr().err
    rows = read_rows(out / "metrics.jsonl")
    assert rows[-1]["kl"] is not None and rows[-1]["kl"] >= 0
    assert rows[0]["lr"] == pytest.approx(3e-3)  # warmup 1 step: full lr at step 1


def test_coef_zero_is_grpo_bit_for_bit(env, tmp_path):
    T.train(config(env, tmp_path / "grpo", method="grpo"))
    ref = weights(tmp_path / "grpo")
    from safetensors.torch import load_file

    init = load_file(str(Path(env["model"]) / "model.safetensors"))
    assert not all(torch.equal(ref[k], init[k]) for k in ref)  # GRPO really learned something ...
    assert any(r["frac_reward_zero_std"] < 1 for r in read_rows(tmp_path / "grpo" / "metrics.jsonl"))  # ... from mixed groups
    for method in ("ucb", "ucb_mean", "ucb_con", "batch"):
        T.train(config(env, tmp_path / method, method=method, coef=0.0))
        w = weights(tmp_path / method)
        assert all(torch.equal(ref[k], w[k]) for k in ref), method
    # ... and a nonzero coefficient does change the weights
    T.train(config(env, tmp_path / "ucb_c", method="ucb", coef=0.5))
    w = weights(tmp_path / "ucb_c")
    assert not all(torch.equal(ref[k], w[k]) for k in ref)


# -- faults ------------------------------------------------------------------------------


def test_nan_stops_keeps_checkpoint_and_resume_matches(env, straight, tmp_path, capsys):
    out = tmp_path / "nan"
    argv = ["--model", env["model"], "--train-data", env["data"], "--out", str(out), "--method", "ucb",
            "--steps", "6", "--batch-questions", "4", "--n", "4", "--max-new-tokens", str(MAX_NEW), "--lr", "3e-3",
            "--threads", "1", "--checkpoint-every", "2", "--wandb-dir", str(out)]
    poison = f"{Path(__file__).parent / 'seams.py'}:PoisonWeightsAfterStep=" + '{"step": 3}'
    assert T.main(argv + ["--callback", poison]) == 1  # NaN weights after step 3: step 4 stops the run
    err = capsys.readouterr().err
    assert "non-finite logits while sampling" in err and "at step 4" in err and "step_2" in err
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_2"]
    assert [r["step"] for r in read_rows(out / "metrics.jsonl")] == [1, 2, 3]  # step 3 past the checkpoint
    assert not (out / "final").exists()
    # the kept checkpoint is intact: resuming (without the fault) ends exactly like the straight run
    assert T.main(argv) == 0
    assert_same_run(straight, out)


def _spawn(env, out, steps=6, wandb_mode="disabled"):
    cmd = [sys.executable, "-m", "obe.train", "--model", env["model"], "--train-data", env["data"],
           "--out", str(out), "--method", "ucb", "--steps", str(steps), "--batch-questions", "4", "--n", "4",
           "--max-new-tokens", str(MAX_NEW), "--lr", "3e-3", "--threads", "1", "--checkpoint-every", "2",
           "--wandb-dir", str(out)]
    envv = dict(os.environ, WANDB_MODE=wandb_mode, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=REPO, env=envv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_lines(proc, path, n, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out waiting for metrics")


@pytest.mark.slow
def test_sigkill_then_rerun_matches_straight_run(env, straight, tmp_path):
    out = tmp_path / "killed"
    proc = _spawn(env, out)
    _wait_lines(proc, out / "metrics.jsonl", 3)  # killed somewhere in step 4 (after step_2 was saved)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists()
    T.train(config(env, out, method="ucb", steps=6))  # the same command again
    assert_same_run(straight, out)


@pytest.mark.slow
def test_sigterm_saves_checkpoint_and_resumes(env, straight, tmp_path):
    out = tmp_path / "term"
    proc = _spawn(env, out)
    _wait_lines(proc, out / "metrics.jsonl", 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    done = len(read_rows(out / "metrics.jsonl"))
    assert done < 6 and f"checkpoint saved at step {done}" in err
    assert ckpt.latest(out / "checkpoints").name == f"step_{done}"
    T.train(config(env, out, method="ucb", steps=6))
    assert_same_run(straight, out)


@pytest.mark.slow
def test_killed_run_resumes_the_same_wandb_run_and_a_restart_starts_a_new_one(env, tmp_path, monkeypatch):
    from test_tracking import FAKE_KEY, _offline_segments

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)  # must end up nowhere in the output folder
    out = tmp_path / "wb"
    import wandb

    wandb.setup()  # as in a parent that used wandb: WANDB_SERVICE (its wandb-core) is passed to the child
    proc = _spawn(env, out, wandb_mode="offline")
    _wait_lines(proc, out / "metrics.jsonl", 3)  # killed somewhere in step 4 (after step_2 was saved)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = (out / "wandb_run_id").read_text().strip()
    T.train(config(env, out, method="ucb", steps=6))  # resumes from step_2
    assert (out / "wandb_run_id").read_text().strip() == run_id
    segments = _offline_segments(out)
    assert list(segments) == [run_id] and len(segments[run_id]) == 2  # the killed start and the resumed one
    killed, resumed = segments[run_id]
    # The killed process lost what wandb had not flushed yet (often everything): whatever is there is a prefix.
    killed_steps = [r["history"]["step"]["num"] for r in killed if r["type"] == "history"]
    assert killed_steps == list(range(1, len(killed_steps) + 1))
    run = next(r["run"] for r in resumed if r["type"] == "run")
    assert run["run_id"] == run_id and run["resume"] is True and run["job_type"] == "train"
    # The resumed start re-logs the kept rows 1-2, then logs 3-6: the whole history, as in metrics.jsonl.
    history = [r["history"] for r in resumed if r["type"] == "history"]
    rows = read_rows(out / "metrics.jsonl")
    assert [h["step"]["num"] for h in history] == [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for h, row in zip(history, rows):
        assert h["item"]["loss"] == pytest.approx(row["loss"]) and h["item"]["reward"] == pytest.approx(row["reward"])
        assert {k for k, v in row.items() if v is not None} <= set(h["item"])
    # A config-change restart is a new run: a new id, its own history from step 1.
    T.train(config(env, out, method="ucb", steps=2, coef=0.3, on_config_change="restart"))
    new_id = (out / "wandb_run_id").read_text().strip()
    assert new_id != run_id
    segments = _offline_segments(out)
    assert sorted(segments) == sorted([run_id, new_id]) and len(segments[new_id]) == 1
    (restarted,) = segments[new_id]
    assert [r["history"]["step"]["num"] for r in restarted if r["type"] == "history"] == [1, 2]
    assert next(r["run"] for r in restarted if r["type"] == "run")["config"]["update"]["coef"] == 0.3
    for path in out.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_resume_with_other_config_is_refused_or_restarted(env, straight, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(straight, out)
    with pytest.raises(SystemExit, match="different config \\(coef\\).*--on-config-change restart"):
        T.train(config(env, out, method="ucb", steps=6, coef=0.3))
    T.train(config(env, out, method="ucb", steps=2, coef=0.3, on_config_change="restart"))
    assert [r["step"] for r in read_rows(out / "metrics.jsonl")] == [1, 2]
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_2"]
    # done.json for the workflow: only for a finished run
    assert T.main(["--write-done", str(straight)]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["steps"] == 6 and done["metrics_rows"] == 6 and done["final"].endswith("final")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text(json.dumps({"steps": 6}))
    with pytest.raises(SystemExit, match="not finished"):
        T.main(["--write-done", str(tmp_path / "unfinished")])


def test_huge_lr_diverges_with_a_clear_error(env, tmp_path):
    with pytest.raises(T.NonFiniteLoss, match="non-finite .* step 2.*Last good checkpoint: none"):
        T.train(config(env, tmp_path / "lr", method="ucb", lr=1e30, steps=4, checkpoint_every=10))
    assert not (tmp_path / "lr" / "final").exists()
