"""Pipeline configuration: JSON-schema validation with errors that name the key.

The Snakefile calls ``validate_config(config)`` when it loads, so a typo or a bad value
fails before any job runs, with the key's path and what is allowed, e.g.::

    config error at train.agg: 'tokenmean' is not one of ['token_mean', ...]
    config error at train: unknown key 'stpes' (allowed: agg, batch_questions, ...)

Values given with ``snakemake --config`` are first given the schema's types
(:func:`coerce_cli_values`), so ``--config 'methods={"batch": {"coef": 0.5}}'`` means what the
same text means in a ``--configfile``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
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
    """Raise ``ConfigError`` listing every schema violation of ``config`` (a mutable ``config``
    first gets the schema's types for its command-line strings, in place: :func:`coerce_cli_values`)."""
    schema = load_schema()
    if isinstance(config, MutableMapping):
        coerce_cli_values(config, schema)
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
    mirror = config.get("data_dir") or os.environ.get("OBE_DATA_DIR")  # a local mirror serves every dataset
    for name, ds in {"train": config["data"]["train"], **tests}.items():
        if ds["source"] != "synthetic" and not (ds.get("path") or ds.get("hub") or ds.get("data_dir") or mirror):
            raise ConfigError(f"config error at data.{name}: a {ds['source']} dataset needs `path`, `data_dir` or "
                              f"`hub`, or a local mirror in the top-level data_dir (or $OBE_DATA_DIR)")
    last = config["train"]["steps"]
    for i, step in enumerate(config["evaluation"].get("steps", [])):
        if not 0 < step <= last:  # a snapshot that training never writes: the step would be dropped silently
            raise ConfigError(f"config error at evaluation.steps.{i}: step {step} is outside (0, train.steps = {last}]; "
                              f"evaluate steps up to the last one (the last one is always evaluated)")
    # Sharded training and colocated vLLM exist only in the trl backend: obe.train would ignore
    # them and run out of memory where docs/scale.md counted on them.
    hw = config.get("hardware") or {}
    if config["train"].get("backend", "obe") == "obe":
        for key, off in (("sharding", "none"), ("colocate_vllm", None), ("nodes", 1), ("cpu_processes", 1)):
            if hw.get(key) not in (None, off):
                raise ConfigError(f"config error at hardware.{key}: {hw[key]!r} needs train.backend: trl "
                                  f"(obe.train is one process without vLLM); set train.backend: trl or "
                                  f"hardware.{key}: {off if off is not None else 'null'}")
    else:
        _check_world(config, hw)


def cpu_processes_per_node(config: Mapping[str, Any]) -> int:
    """Training processes per node without GPUs (trl backend): hardware.cpu_processes, at most
    hardware.gpus (the GPUs per node they stand in for, when given); 1 when unset."""
    hw = config.get("hardware") or {}
    wanted = hw.get("cpu_processes") or 1
    return max(1, min(wanted, hw.get("gpus") or wanted))


def _check_world(config: Mapping[str, Any], hw: Mapping[str, Any]) -> None:
    """The trl backend's process layout can launch: hardware.nodes x (GPUs or CPU processes per
    node) ranks that split the batch evenly, and vLLM engines that fit within a node."""
    train, res = config["train"], (config.get("resources") or {}).get("train") or {}
    gpus = config.get("gpus_per_job", 0) if res.get("gpus") is None else res["gpus"]
    nodes, cpu_procs = hw.get("nodes", 1), cpu_processes_per_node(config)
    if gpus and (hw.get("cpu_processes") or 1) > 1:
        raise ConfigError(f"config error at hardware.cpu_processes: {hw['cpu_processes']} applies to training without GPUs, "
                          f"but the train job has {gpus} GPU(s) per node (resources.train.gpus / gpus_per_job), "
                          "which start one process each; remove hardware.cpu_processes")
    per_node = gpus or cpu_procs
    world = nodes * per_node
    what = f"{per_node} GPU(s) per node (resources.train.gpus / gpus_per_job)" if gpus else \
        f"{per_node} CPU process(es) per node (hardware.cpu_processes)"
    rows = train["batch_questions"] * train["n"]
    if rows % world:
        raise ConfigError(f"config error at hardware.nodes: the world size {world} = {nodes} node(s) (hardware.nodes) x "
                          f"{what} does not divide the {rows} rollouts of a step (train.batch_questions x train.n); "
                          "every rank takes an equal share")
    micro = train.get("micro_batch") or 0
    if micro and (rows // world) % micro:
        raise ConfigError(f"config error at train.micro_batch: {micro} does not divide the {rows // world} rollouts "
                          f"of each of the {world} ranks (train.batch_questions x train.n / world size)")
    tp = (config.get("sampling") or {}).get("tensor_parallel_size", 1)
    if gpus and hw.get("colocate_vllm") and gpus % tp:
        raise ConfigError(f"config error at sampling.tensor_parallel_size: {tp} does not divide the {gpus} GPUs per node "
                          "of the train job (resources.train.gpus / gpus_per_job); with hardware.colocate_vllm each "
                          "node's ranks form whole vLLM engines of tensor_parallel_size GPUs")


# -- values from `snakemake --config` -------------------------------------------------------
#
# Snakemake reads a top-level `--config key=value` as an int, float or bool when it can, but a
# nested value (`methods={"batch": {"coef": 0.5}}`) with YAML's BaseLoader, which leaves every
# scalar inside a string ('0.5', 'true', 'null'). A --configfile gives typed values. So before
# validation a string becomes what YAML reads in it (what a --configfile would give for the same
# text) where the schema takes that value's type, and a number where only text is allowed
# becomes its text (`experiment=2024`). A value that still does not fit is left for the
# validator, which names its key.


def coerce_cli_values(config: MutableMapping[str, Any], schema: Mapping[str, Any] | None = None) -> list[str]:
    """Give the strings of ``config`` the schema's types, in place; returns the key paths changed.

    ``'0.5'`` -> 0.5 and ``'1e-4'`` -> 0.0001 for a number, ``'3'`` -> 3 for an integer, ``'true'``
    -> True for a boolean, ``'null'`` -> None where null is allowed (text and all: ``name_or_path:
    null`` means none, as unquoted in YAML), list items by the list's item schema. ``'3.5'`` for an
    integer or ``'high'`` for a number stay strings, and validation refuses them with their path.
    """
    schema = load_schema() if schema is None else schema
    changed: list[str] = []
    _coerce_container(config, schema, schema, "", changed)
    return changed


def _coerce_container(container: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str,
                      changed: list[str]) -> None:
    keys = list(container) if isinstance(container, MutableMapping) else range(len(container))
    for key in keys:
        sub = _member_schema(schema, key, root) if isinstance(container, MutableMapping) else _item_schema(schema, root)
        where = f"{path}.{key}" if path else str(key)
        value = container[key]
        if isinstance(value, (MutableMapping, list)):
            _coerce_container(value, sub, root, where, changed)
            continue
        typed = _typed(value, sub, root)
        if typed is not value:
            container[key] = typed
            changed.append(where)


def _typed(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """``value`` in a type ``schema`` accepts, if a command-line reading of it has one; else ``value``."""
    allowed = _json_types(schema, root)
    if allowed is None:
        return value
    if isinstance(value, str):
        try:
            read = yaml.safe_load(value)
        except yaml.YAMLError:
            read = value
        if not isinstance(read, str) and _json_type(read) in allowed:
            return read
        if "string" not in allowed:
            for parse in (int, float):  # e.g. '1e-4', which YAML 1.1 reads as text
                try:
                    number = parse(value)
                except ValueError:
                    continue
                if _json_type(number) in allowed and math.isfinite(number):
                    return number
        return value
    if allowed == {"string"} and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _branches(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The schema with its ``$ref`` resolved, or each of its ``oneOf``/``anyOf`` alternatives."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if alternatives:
        return [b for alt in alternatives for b in _branches(alt, root)]
    return [schema]


def _json_types(schema: Mapping[str, Any], root: Mapping[str, Any]) -> set[str] | None:
    """The JSON types ``schema`` accepts (an integer is a number too); None when it says nothing."""
    types: set[str] = set()
    for branch in _branches(schema, root):
        if "type" in branch:
            declared = branch["type"]
            types |= {declared} if isinstance(declared, str) else set(declared)
        elif "enum" in branch:
            types |= {_json_type(v) for v in branch["enum"]}
        else:
            return None
    if "number" in types:
        types.add("integer")
    return types


def _member_schema(schema: Mapping[str, Any], key: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    for branch in _branches(schema, root):
        if key in branch.get("properties", {}):
            return branch["properties"][key]
        if isinstance(branch.get("additionalProperties"), Mapping):
            return branch["additionalProperties"]
    return {}


def _item_schema(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    for branch in _branches(schema, root):
        if isinstance(branch.get("items"), Mapping):
            return branch["items"]
    return {}


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
