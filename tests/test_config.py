"""Config validation names the key and what is allowed; presets merge as Snakemake merges them."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from conftest import REPO_ROOT
from obe.core.config import ConfigError, deep_merge, validate_config


@pytest.fixture
def default_config():
    with open(REPO_ROOT / "config.yaml") as f:
        return yaml.safe_load(f)


def test_default_config_is_valid(default_config):
    validate_config(default_config)


# configs/rehearsal.yaml is an overlay, valid after a GPU preset (tests/test_rehearsal.py checks it so)
@pytest.mark.parametrize("preset", sorted(p for p in (REPO_ROOT / "configs").glob("*.yaml") if p.name != "rehearsal.yaml"),
                         ids=lambda p: p.name)
def test_presets_are_valid(default_config, preset):
    with open(preset) as f:
        validate_config(deep_merge(default_config, yaml.safe_load(f)))


def test_unknown_key_names_path_and_allowed(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["train"]["stpes"] = 10
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "config error at train" in msg and "'stpes'" in msg and "steps" in msg


def test_bad_enum_value(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["train"]["agg"] = "tokenmean"
    with pytest.raises(ConfigError, match=r"train\.agg: 'tokenmean' is not one of"):
        validate_config(cfg)


def test_bad_method_settings(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["methods"]["ucb_con"]["coeff"] = 0.1
    with pytest.raises(ConfigError, match=r"methods\.ucb_con.*'coeff'"):
        validate_config(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["train"]["methods"] = ["grpo", "ucb_max"]
    with pytest.raises(ConfigError, match=r"train\.methods\.1"):
        validate_config(cfg)


def test_real_dataset_needs_a_path(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["data"]["test"]["math500"] = {"source": "math500", "split": "test"}
    with pytest.raises(ConfigError, match=r"data\.math500: a math500 dataset needs `path`, `data_dir` or `hub`"):
        validate_config(cfg)


def test_external_model_needs_a_name(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["base_model"]["embedded"] = False
    with pytest.raises(ConfigError, match="name_or_path"):
        validate_config(cfg)


def test_deep_merge():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}, "d": 3}


def test_resources_name_the_rule_and_key(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["resources"]["sampling"] = cfg["resources"]["sample"]
    with pytest.raises(ConfigError, match=r"resources: unknown key\(s\) \['sampling'\].*allowed: .*sample"):
        validate_config(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["resources"]["train"]["runtime"] = "10h"
    with pytest.raises(ConfigError, match=r"resources\.train\.runtime: '10h' is not of type 'integer'"):
        validate_config(cfg)
    cfg = copy.deepcopy(default_config)
    del cfg["resources"]["grade"]["mem_mb"]
    with pytest.raises(ConfigError, match=r"resources\.grade: 'mem_mb' is a required property"):
        validate_config(cfg)


def test_gpu_presets_ask_for_gpus_and_hours(default_config):
    """The paper-scale presets set realistic resources: GPUs and hours of runtime for training,
    more host memory than the CPU default (their models load tens of GB on the host)."""
    for name in ("qwen2.5-math-1.5b", "qwen2.5-7b", "llama-3.1-8b-instruct"):
        with open(REPO_ROOT / "configs" / f"{name}.yaml") as f:
            cfg = deep_merge(default_config, yaml.safe_load(f))
        res = cfg["resources"]
        for rule in ("sample", "train"):
            gpus = cfg["gpus_per_job"] if res[rule]["gpus"] is None else res[rule]["gpus"]
            assert gpus >= 1, (name, rule)
            assert res[rule]["mem_mb"] > default_config["resources"][rule]["mem_mb"], (name, rule)
        assert res["train"]["runtime"] >= 12 * 60, name
        if "hardware" in cfg:  # the GPUs the memory plan (docs/scale.md) is computed for
            assert res["train"]["gpus"] == cfg["hardware"]["gpus"], name


@pytest.mark.parametrize("steps", [[0], [50, 101], [-3]])
def test_evaluation_steps_outside_training_are_an_error(default_config, steps):
    cfg = copy.deepcopy(default_config)
    cfg["train"]["steps"] = 100
    cfg["evaluation"]["steps"] = steps
    bad = next(i for i, s in enumerate(steps) if not 0 < s <= 100)
    with pytest.raises(ConfigError, match=rf"evaluation\.steps(\.{bad})?: .*(outside \(0, train\.steps = 100\]|minimum)"):
        validate_config(cfg)


def test_evaluation_step_equal_to_the_last_step_is_allowed(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["train"]["steps"] = 100
    cfg["evaluation"]["steps"] = [50, 100]
    validate_config(cfg)


@pytest.mark.parametrize("key,value", [("sharding", "zero3"), ("colocate_vllm", 0.4)])
def test_sharding_and_colocated_vllm_need_the_trl_backend(default_config, key, value):
    cfg = copy.deepcopy(default_config)
    cfg["hardware"] = {"gpu": "H100-80GB", "gpu_memory_gb": 80, "gpus": 8, key: value}
    cfg["train"]["backend"] = "obe"
    with pytest.raises(ConfigError, match=rf"hardware\.{key}: .* needs train\.backend: trl"):
        validate_config(cfg)
    cfg["train"]["backend"] = "trl"
    validate_config(cfg)


# -- `snakemake --config` values ------------------------------------------------------------


def _with_cli(default_config, *entries: str) -> dict:
    """The config Snakemake builds for `--config ENTRY ...` over config.yaml (its own parser)."""
    from snakemake.cli import parse_config

    return deep_merge(copy.deepcopy(default_config), parse_config(list(entries)))


def test_command_line_values_get_the_schema_types(default_config):
    cfg = _with_cli(default_config,
                    'methods={"batch": {"coef": 0.5, "gate_solved": false}, "ucb_con": {"b0": 1}}',
                    'train={"seeds": [3, 4], "steps": 50, "lr": 1e-4, "gradient_checkpointing": true}',
                    'evaluation={"steps": [25]}', 'resources={"train": {"gpus": null, "threads": 2}}',
                    'wandb={"tags": [paper, 2]}', "experiment=2024", "threads=2")
    assert cfg["methods"]["batch"]["coef"] == "0.5"  # what Snakemake hands over, nested: text
    validate_config(cfg)
    assert cfg["methods"]["batch"] == {**default_config["methods"]["batch"], "coef": 0.5, "gate_solved": False}
    assert cfg["methods"]["ucb_con"]["b0"] == 1 and cfg["methods"]["ucb_con"]["coef"] == 1.0
    train = cfg["train"]
    assert (train["seeds"], train["steps"], train["lr"], train["gradient_checkpointing"]) == ([3, 4], 50, 1e-4, True)
    assert cfg["evaluation"]["steps"] == [25]
    assert cfg["resources"]["train"]["gpus"] is None and cfg["resources"]["train"]["threads"] == 2
    assert cfg["wandb"]["tags"] == ["paper", "2"]  # text stays text
    assert cfg["experiment"] == "2024" and cfg["threads"] == 2


def test_command_line_values_equal_the_same_text_in_a_config_file(default_config, tmp_path):
    text = '{"batch": {"coef": 0.5, "leave_one_out": true}, "ucb": {"coef": 2}}'
    cli = _with_cli(default_config, f"methods={text}")
    from_file = deep_merge(copy.deepcopy(default_config), yaml.safe_load(f"methods: {text}"))
    validate_config(cli)
    validate_config(from_file)
    assert cli == from_file


@pytest.mark.parametrize("entry,error", [
    ('methods={"batch": {"coef": high}}', r"methods\.batch\.coef: 'high' is not of type 'number'"),
    ('train={"steps": 2.5}', r"train\.steps: '2\.5' is not of type 'integer'"),
    ('train={"seeds": [1, x]}', r"train\.seeds\.1: 'x' is not of type 'integer'"),
    ('train={"gradient_checkpointing": maybe}', r"train\.gradient_checkpointing: 'maybe' is not of type 'boolean'"),
    ('methods={"batch": {"coef": -1}}', r"methods\.batch\.coef: -1 is less than the minimum of 0"),
])
def test_a_command_line_value_that_does_not_fit_names_its_key(default_config, entry, error):
    with pytest.raises(ConfigError, match=error):
        validate_config(_with_cli(default_config, entry))


def test_config_override_on_the_command_line_plans_the_same_commands_as_a_config_file(tmp_path):
    """`snakemake -n --config 'methods={"batch": {"coef": 0.5}}'` is accepted (it was refused as
    "'0.5' is not of type 'number'") and plans the commands the same override in a file plans."""
    from test_dag import snakemake

    override = tmp_path / "override.yaml"
    override.write_text("methods:\n  batch: {coef: 0.5}\n")
    base = ["-n", "-p", "--cores", "2", "--configfile", "configs/smoke.yaml"]
    results = f"results_dir={tmp_path / 'results'}"
    plans = [snakemake(*base, "--config", results, 'methods={"batch": {"coef": 0.5}}'),
             snakemake(*base, str(override), "--config", results)]
    for out in plans:
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    commands = [sorted(c for c in re.findall(r"Shell command: (.*?)\n\n", out.stdout, flags=re.S) if "obe.train" in c)
                for out in plans]
    assert commands[0] == commands[1] and any("--method=batch" in c and "--coef=0.5" in c for c in commands[0])
