"""The conda environments for cluster rules pin the same versions as pyproject.toml."""

from __future__ import annotations

import tomllib

import yaml
from packaging.requirements import Requirement

from conftest import REPO_ROOT

# Orchestration-only packages: needed where Snakemake runs, not inside a rule's env.
NOT_IN_RULE_ENVS = {"snakemake", "snakemake-executor-plugin-slurm"}


def _specs(requirements: list[str]) -> dict[str, str]:
    out = {}
    for line in requirements:
        req = Requirement(line)
        out[req.name.lower()] = str(req.specifier)
    return out


def _pyproject():
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _env_pip(name: str) -> dict[str, str]:
    with open(REPO_ROOT / "envs" / name) as f:
        env = yaml.safe_load(f)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return _specs(pip)


def test_cpu_env_matches_pyproject():
    base = _specs(_pyproject()["dependencies"])
    expected = {k: v for k, v in base.items() if k not in NOT_IN_RULE_ENVS}
    assert _env_pip("cpu.yaml") == expected


def test_gpu_env_matches_pyproject_with_gpu_extra():
    project = _pyproject()
    expected = {k: v for k, v in _specs(project["dependencies"]).items() if k not in NOT_IN_RULE_ENVS}
    expected.update(_specs(project["optional-dependencies"]["gpu"]))  # the extra narrows base pins
    assert _env_pip("gpu.yaml") == expected


def test_torch_is_pinned_exactly():
    # A looser torch range pulls a multi-GB CUDA build on the CPU machines.
    assert _specs(_pyproject()["dependencies"])["torch"] == "==2.13.0"
