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


# -- the GPU pins against their packages' published requirements (envs/published.py) ---------

def _published():
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("obe_env_published", REPO_ROOT / "envs" / "published.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, json.loads((REPO_ROOT / "envs" / "published-metadata.json").read_text())


def test_gpu_pins_agree_with_published_requirements():
    published, metadata = _published()
    pins = published.gpu_pins(_pyproject())
    assert published.conflicts(pins, metadata) == []
    # the record is of the wheels we pin, with where each came from
    for name in ("vllm", "trl", "transformers", "accelerate", "peft"):
        pkg = metadata["packages"][name]
        assert pkg["version"] == published.exact_version(pins[name])
        assert pkg["wheel"].endswith(".whl") and len(pkg["sha256"]) == 64 and pkg["requires_dist"]
    # the facts the pins rest on, as published
    vllm = [Requirement(r) for r in metadata["packages"]["vllm"]["requires_dist"]]
    assert any(r.name == "torch" and str(r.specifier) == "==2.13.0" for r in vllm)


def test_published_check_catches_disagreements():
    import copy

    published, metadata = _published()
    pins = published.gpu_pins(_pyproject())
    bad = copy.deepcopy(metadata)  # vLLM 0.33.0's situation: it wants another torch than we pin
    bad["packages"]["vllm"]["requires_dist"] = [
        "torch==2.14.0" if r.startswith("torch==") else r for r in bad["packages"]["vllm"]["requires_dist"]]
    assert any(p.startswith("torch: no published version") for p in published.conflicts(pins, bad))
    bad = copy.deepcopy(metadata)  # two recorded packages disagree on a range we leave open
    bad["packages"]["trl"]["requires_dist"].append("datasets<4.0")
    assert any(p.startswith("datasets:") for p in published.conflicts(pins, bad))
    bad = copy.deepcopy(metadata)  # TRL's vllm extra (which we ask for) no longer admits our vLLM
    bad["packages"]["trl"]["requires_dist"] = [
        r.replace("vllm<=0.31.0", "vllm<=0.30.0") for r in bad["packages"]["trl"]["requires_dist"]]
    assert any(p.startswith("vllm:") for p in published.conflicts(pins, bad))
    bad = copy.deepcopy(metadata)  # a pin moved without re-recording
    bad["packages"]["peft"]["version"] = "0.1.0"
    assert any("re" in p and p.startswith("peft:") for p in published.conflicts(pins, bad))
    bad = copy.deepcopy(metadata)
    bad["packages"]["trl"]["requires_python"] = ">=3.12"
    assert any("requires Python" in p for p in published.conflicts(pins, bad))
    # an extra we do not ask for does not count (trl's deepspeed extra pins nothing of ours)
    assert not published.applies(Requirement('deepspeed>=0.18; extra == "deepspeed"'), {"vllm", "peft"})
    assert published.applies(Requirement('vllm<=0.31.0,>=0.22.0; extra == "vllm"'), {"vllm", "peft"})
