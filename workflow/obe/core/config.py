"""Pipeline configuration: JSON-schema validation with errors that name the key.

The Snakefile calls ``validate_config(config)`` when it loads, so a typo or a bad value
fails before any job runs, with the key's path and what is allowed, e.g.::

    config error at train.agg: 'tokenmean' is not one of ['token_mean', ...]
    config error at train: unknown key 'stpes' (allowed: agg, batch_questions, ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not match the schema."""


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _allowed_keys(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = root["$defs"][name]
    return sorted(schema.get("properties", {}))


def describe(error: jsonschema.ValidationError, root: Mapping[str, Any]) -> str:
    """One line per error: where it is, what is wrong, what is allowed."""
    where = _path(error)
    if error.validator == "additionalProperties":
        allowed = _allowed_keys(error.schema, root)
        extra = sorted(set(error.instance) - set(allowed))
        return f"config error at {where}: unknown key(s) {extra} (allowed: {', '.join(allowed)})"
    if error.validator == "enum":
        return f"config error at {where}: {error.instance!r} is not one of {error.validator_value}"
    return f"config error at {where}: {error.message}"


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` listing every schema violation of ``config``."""
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("\n".join(describe(e, schema) for e in errors))
    for name in config["train"].get("methods", []):
        if name not in config["methods"]:
            raise ConfigError(f"config error at train.methods: {name!r} has no entry under `methods`")
    if not config["base_model"]["embedded"] and not config["base_model"].get("name_or_path"):
        raise ConfigError("config error at base_model.name_or_path: required when base_model.embedded is false")
    if config["base_model"].get("size") == "rehearsal" and not config["base_model"].get("name_or_path"):
        raise ConfigError("config error at base_model.name_or_path: base_model.size rehearsal builds a stand-in for "
                          "this model (merge configs/rehearsal.yaml after a preset that names one)")
    tests = {k: v for k, v in config["data"]["test"].items() if v is not None}
    if not tests:
        raise ConfigError("config error at data.test: at least one test set is needed")
    for name, ds in {"train": config["data"]["train"], **tests}.items():
        if ds["source"] != "synthetic" and not (ds.get("path") or ds.get("hub") or ds.get("data_dir")):
            raise ConfigError(f"config error at data.{name}: a {ds['source']} dataset needs `path`, `data_dir` or `hub`")
    last = config["train"]["steps"]
    for i, step in enumerate(config["evaluation"].get("steps", [])):
        if not 0 < step <= last:  # a snapshot that training never writes: the step would be dropped silently
            raise ConfigError(f"config error at evaluation.steps.{i}: step {step} is outside (0, train.steps = {last}]; "
                              f"evaluate steps up to the last one (the last one is always evaluated)")
    # Sharded training and colocated vLLM exist only in the trl backend: obe.train would ignore
    # them and run out of memory where docs/scale.md counted on them.
    hw = config.get("hardware") or {}
    if config["train"].get("backend", "obe") == "obe":
        for key, off in (("sharding", "none"), ("colocate_vllm", None)):
            if hw.get(key, off) != off:
                raise ConfigError(f"config error at hardware.{key}: {hw[key]!r} needs train.backend: trl "
                                  f"(obe.train is one process without vLLM); set train.backend: trl or "
                                  f"hardware.{key}: {off if off is not None else 'null'}")
    if hw.get("cpu_processes"):
        _check_cpu_processes(config)


def cpu_processes(config: Mapping[str, Any]) -> int:
    """Processes of a training job without GPUs: ``min(hardware.cpu_processes, gpus x nodes)``
    (a 1-GPU preset stays one process, an 8-GPU one becomes several), 1 when unset."""
    hw = config.get("hardware") or {}
    wanted = hw.get("cpu_processes") or 1
    return max(1, min(wanted, hw.get("gpus", wanted) * hw.get("nodes", 1)))


def _check_cpu_processes(config: Mapping[str, Any]) -> None:
    t = config["train"]
    if t.get("backend", "obe") != "trl":
        raise ConfigError("config error at hardware.cpu_processes: needs train.backend: trl (obe.train is one process)")
    procs = cpu_processes(config)
    sequences = t["batch_questions"] * t["n"]
    if sequences % procs:
        raise ConfigError(f"config error at train.batch_questions: batch_questions x n = {sequences} sequences do not "
                          f"split over the {procs} CPU processes of hardware.cpu_processes")
    micro = t.get("micro_batch") or 0
    if micro and (sequences // procs) % micro:
        raise ConfigError(f"config error at train.micro_batch: {micro} does not divide the {sequences // procs} "
                          f"sequences of each of the {procs} CPU processes (hardware.cpu_processes)")


def load_config(*paths: str) -> dict[str, Any]:
    """Merge YAML files left to right (later files override keys, recursively) and validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            merged = deep_merge(merged, yaml.safe_load(f) or {})
    validate_config(merged)
    return merged


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge, as Snakemake merges --configfile files over the Snakefile's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
