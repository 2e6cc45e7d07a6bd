"""obe.training.run (the lifecycle both trainers share), through obe.train on a tiny model:
grading errors are counted and logged with their input and stop a run past the limit; callbacks
see each step before its checkpoint; the pipeline's config reaches TrainConfig whole."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

import obe.grading.grader as grader
from obe import train as T
from obe.core.config import load_schema
from obe.training.callbacks import canonical_spec, load_callbacks
from obe.training.config import (TRAIN_FIELDS_ELSEWHERE, TRAIN_PIPELINE_KEYS, TrainConfig, pipeline_settings,
                                 resolve_config, settings_flags)
from test_train import config, env  # noqa: F401 (the tiny model and data fixture)

REPO = Path(__file__).resolve().parents[1]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class RaiseOnce:
    """Replaces obe.grading's preparation of an answer: the first call raises, as a grader bug on one input would."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def __call__(self, response, gold, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError(f"boom on {response[:20]!r}")
        return self.real(response, gold, *args, **kwargs)


def test_a_grader_that_raises_on_one_input_is_counted_and_logged(env, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setattr(grader, "_prepare", RaiseOnce(grader._prepare))
    out = tmp_path / "run"
    T.train(config(env, out, steps=2, max_grading_error_frac=1.0))
    got = rows(out / "metrics.jsonl")
    assert [r["grading/errors"] for r in got] == [1, 0]
    first = rows(out / "rollouts.jsonl")[0]
    assert first["outcome_key"] == "<error>" and not first["correct"]
    err = capsys.readouterr().err
    assert f"grading error at step 1, question {first['question_id']}: RuntimeError: boom on" in err
    assert "completion '" in err  # the input that raised


def test_grading_errors_past_the_limit_stop_the_run_naming_the_input(env, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setattr(grader, "_prepare", RaiseOnce(grader._prepare))  # 1 of 16 samples: past 1%
    out = tmp_path / "run"
    argv = ["--model", env["model"], "--train-data", env["data"], "--out", str(out), "--steps", "3",
            "--batch-questions", "4", "--n", "4", "--max-new-tokens", "24", "--threads", "1", "--wandb-dir", str(out)]
    assert T.main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of 16 samples so far raised inside the grader (more than max_grading_error_frac = 0.01)" in err
    assert "RuntimeError: boom on" in err and "completion '" in err
    assert [r["grading/errors"] for r in rows(out / "metrics.jsonl")] == [1]  # the step is recorded first
    assert not (out / "final").exists()


class Recorder:
    """Writes what each step's callback saw (and whether that step's checkpoint existed yet) to
    ``log``: the run loads this file as a module of its own, so it reports through a file."""

    def __init__(self, log: str):
        self.log = log

    def on_step_end(self, ctx) -> None:
        ckpt_dir = Path(ctx.config.out) / "checkpoints" / f"step_{ctx.step}"
        with open(self.log, "a") as f:
            f.write(json.dumps([ctx.step, ctx.resumed, ctx.rank, ctx.world_size, ckpt_dir.exists(), ctx.signal,
                                ctx.model is not None]) + "\n")


def test_callbacks_see_each_step_before_its_checkpoint(env, tmp_path):  # noqa: F811
    log = tmp_path / "seen.jsonl"
    spec = f"{Path(__file__).resolve()}:Recorder=" + json.dumps({"log": str(log)})
    T.train(config(env, tmp_path / "run", steps=2, checkpoint_every=2, callbacks=(spec,)))
    assert rows(log) == [[1, False, 0, 1, False, None, True], [2, False, 0, 1, False, None, True]]


def test_callback_specs_are_checked_and_canonical(tmp_path):
    assert canonical_spec({"target": "pkg.mod:Name", "kwargs": {"b": 1, "a": 2}}) == 'pkg.mod:Name={"a": 2, "b": 1}'
    assert canonical_spec('pkg.mod:Name={"b": 1}') == 'pkg.mod:Name={"b": 1}'
    for bad in ("pkg.mod", "pkg.mod:Name={not json}", "pkg.mod:Name=[1]", {"kwargs": {}}, 3):
        with pytest.raises(ValueError):
            canonical_spec(bad)
    (tmp_path / "hooks.py").write_text("class Hook:\n    def __init__(self, x):\n        self.x = x\n")
    (hook,) = load_callbacks([f"{tmp_path / 'hooks.py'}:Hook=" + '{"x": 5}'])
    assert hook.x == 5
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_callbacks([f"{tmp_path / 'hooks.py'}:Missing"])


def test_the_pipeline_config_reaches_trainconfig_whole(tmp_path):
    """Every key of the schema's `train:` is a TrainConfig field or a pipeline key; every field
    another section holds exists in that section and in TrainConfig; the default config's
    settings of each method parse into a TrainConfig with the same values."""
    schema = load_schema()["properties"]
    names = {f.name for f in fields(TrainConfig)}
    assert set(schema["train"]["properties"]) - set(TRAIN_PIPELINE_KEYS) <= names
    assert not set(TRAIN_PIPELINE_KEYS) & names
    for section, keys in TRAIN_FIELDS_ELSEWHERE.items():
        assert set(keys) <= names and set(keys) <= set(schema[section]["properties"]), section
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for method in cfg["train"]["methods"]:
        settings = pipeline_settings(cfg, method, 3, [50, 100])
        parsed, _ = resolve_config(["--model", str(tmp_path), "--train-data", "t.jsonl", "--out", "o",
                                    *settings_flags(settings)])
        for key, value in settings.items():
            assert getattr(parsed, key) == (tuple(value) if isinstance(value, list) else value), key


def test_the_engines_write_no_row_themselves():
    """obe.train and the TRL backend hand their steps to TrainingRun, the only writer of
    metrics.jsonl, rollouts.jsonl and W&B (no open/write/tracker call, no JSONL name in their
    code, docstrings aside); and no test switch lives in the package."""
    import ast

    package = REPO / "workflow" / "obe"
    for name in ("train.py", "engines/trl_backend.py", "engines/trl_trainer.py"):
        tree = ast.parse((package / name).read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                assert called not in ("open", "write", "log", "log_table", "start_run", "relog_rows"), (name, called)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                assert "tracking" not in ast.unparse(node), (name, ast.unparse(node))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert ".jsonl" not in node.value, (name, node.value)
    assert not [p for p in package.rglob("*.py") if "OBE_TEST_" in p.read_text()]
