"""Config validation names the key and what is allowed; presets merge as Snakemake merges them."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO_ROOT
from obe.config import ConfigError, deep_merge, validate_config


@pytest.fixture
def default_config():
    with open(REPO_ROOT / "config.yaml") as f:
        return yaml.safe_load(f)


def test_default_config_is_valid(default_config):
    validate_config(default_config)


@pytest.mark.parametrize("preset", sorted((REPO_ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
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
