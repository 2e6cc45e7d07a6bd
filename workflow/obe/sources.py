"""Where each configured dataset and the base model come from, checked when the Snakefile loads.

A real dataset of the config (``data.train``, ``data.test.<name>``) is read from the first of:

1. its own ``path`` (local JSONL files) or its own ``data_dir`` (a folder in the mirror layout);
2. the top-level ``data_dir``, else the environment variable ``OBE_DATA_DIR`` (the config key
   wins when it is set): a local mirror laid out as ``obe.data.STANDARD`` says
   (``<source>/<split>.jsonl``, MATH's ``*_paths.txt``), e.g. ``../shared/data``;
3. its ``hub`` entry: a Hugging Face dataset pinned by revision, read from the local cache.

Relative paths resolve from the repository root. Local files are inputs of the data rule (a
changed file reruns what depends on it); a hub dataset's revision is in the rule's arguments.
Jobs run with the hub offline (rules/common.smk), so before any job starts
:func:`check_sources` refuses a local file that does not exist (naming the config key and the
path) and a hub dataset or base model that is not in the cache (naming the command that fetches
it), unless ``HF_HUB_OFFLINE`` is set false in the environment that starts Snakemake.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from obe.core.config import ConfigError
from obe.core.hub import MODEL_FILES, MODEL_IGNORE, HubDataset, cached_snapshot, hub_cache, jobs_offline

DATA_DIR_VARIABLE = "OBE_DATA_DIR"


class SourceError(ConfigError):
    """Configured data or a base model that a job would not find."""


@dataclass(frozen=True)
class DatasetSource:
    """How the data stage gets one configured dataset: its ``obe.data`` arguments, the local
    files that are inputs of the rule (``required`` must exist: (path, what it is)), the hub
    dataset when it comes from the hub, and where that choice came from (for messages)."""

    key: str
    kind: str  # synthetic | files | hub
    args: list[str]
    inputs: list[str] = field(default_factory=list)
    required: list[tuple[str, str]] = field(default_factory=list)
    hub: HubDataset | None = None
    origin: str = ""


def local_path(path: str | Path, root: Path) -> str:
    """A path of the config as jobs see it: relative ones resolve from the repository root and
    are given relative to the working directory (unchanged when Snakemake runs from the root, so
    a moved checkout with its data beside it reruns nothing); absolute ones stay absolute."""
    path = Path(os.path.expanduser(str(path)))
    if path.is_absolute():
        return str(path)
    return os.path.relpath(os.path.normpath(root / path), os.getcwd())


def data_dir(config: Mapping[str, Any], root: Path,
             environ: Mapping[str, str] = os.environ) -> tuple[str | None, str]:
    """The local mirror every dataset reads (None when there is none) and where that came from:
    the config's ``data_dir`` when set, else ``$OBE_DATA_DIR``."""
    if config.get("data_dir"):
        return local_path(config["data_dir"], root), f"data_dir: {config['data_dir']}"
    if environ.get(DATA_DIR_VARIABLE):
        return local_path(environ[DATA_DIR_VARIABLE], root), f"{DATA_DIR_VARIABLE}={environ[DATA_DIR_VARIABLE]}"
    return None, ""


def dataset_entry(config: Mapping[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """``(config key, entry)`` of the dataset ``train`` or a test set's name."""
    if name == "train":
        return "data.train", config["data"]["train"]
    return f"data.test.{name}", config["data"]["test"][name]


def _mirror_files(folder: str, source: str, split: str, key: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Inputs and required files of ``(source, split)`` in a mirror folder (sidecar id files are
    inputs when present, as obe.data reads them when present)."""
    from obe.data import STANDARD

    if (source, split) not in STANDARD:
        known = ", ".join(f"{s}/{p}" for s, p in STANDARD)
        raise SourceError(f"config error at {key}: a local data folder has no file for split {split!r} of "
                          f"{source!r} (known: {known})")
    paths, exclude = STANDARD[(source, split)]
    required = [(os.path.join(folder, p), "a data file") for p in paths]
    required += [(os.path.join(folder, p), "the problems removed from it") for p in exclude]
    inputs = []
    for p in paths:
        inputs.append(os.path.join(folder, p))
        sidecar = os.path.join(folder, p.removesuffix(".jsonl") + "_paths.txt")
        if os.path.isfile(sidecar):
            inputs.append(sidecar)
    inputs += [os.path.join(folder, p) for p in exclude]
    return inputs, required


def question_cap(config: Mapping[str, Any], name: str) -> int | None:
    """``data.max_questions`` of a dataset (its ``train`` entry, or ``test`` for any test set):
    a cap on every dataset, e.g. a rehearsal's slice of a preset's sets; None when uncapped."""
    return (config["data"].get("max_questions") or {}).get("train" if name == "train" else "test")


def capped(size: int | None, cap: int | None) -> int | None:
    return size if cap is None else cap if size is None else min(size, cap)


def dataset_source(config: Mapping[str, Any], name: str, root: Path,
                   environ: Mapping[str, str] = os.environ) -> DatasetSource:
    """How the dataset ``name`` (``train`` or a test set) is read, in the order of the module
    docstring. Raises :class:`SourceError` for a dataset that names no source at all."""
    key, ds = dataset_entry(config, name)
    source = ds["source"]
    split = ds.get("split", "train" if name == "train" else "test")
    cap = question_cap(config, name)
    args = ["--source", source, "--split", split]
    if source == "synthetic":
        args += ["--n", capped(ds.get("n", 1000), cap), "--seed", ds.get("seed", 0)]
        if "difficulty" in ds:
            args += ["--difficulty", ds["difficulty"]]
        return DatasetSource(key, "synthetic", [str(a) for a in args])
    most = capped(ds.get("limit"), cap)
    limit = ["--limit", most, "--seed", ds.get("seed", 0)] if most else []
    mirror, origin = data_dir(config, root, environ)
    if ds.get("path"):
        file = local_path(ds["path"], root)
        return DatasetSource(key, "files", [str(a) for a in args + ["--path", file] + limit], [file],
                             [(file, "a data file")], origin=f"{key}.path")
    folder, origin = ((local_path(ds["data_dir"], root), f"{key}.data_dir") if ds.get("data_dir")
                      else (mirror, origin))
    if folder:
        inputs, required = _mirror_files(folder, source, split, key)
        return DatasetSource(key, "files", [str(a) for a in args + ["--data-dir", folder] + limit],
                             inputs, required, origin=origin)
    if ds.get("hub"):
        spec = HubDataset.from_config(ds["hub"], split)
        args += ["--hub", spec.spec()]
        if spec.exclude:
            args += ["--exclude-hub", *(e.spec() for e in spec.exclude)]
        return DatasetSource(key, "hub", [str(a) for a in args + limit], hub=spec, origin=f"{key}.hub")
    raise SourceError(f"config error at {key}: a {source} dataset needs `path`, `data_dir` or `hub`, or a "
                      f"local mirror in the top-level data_dir (or ${DATA_DIR_VARIABLE})")


def base_model_hub(config: Mapping[str, Any], root: Path) -> tuple[str, str | None] | None:
    """``(repo id, revision)`` of a base model that comes from the hub; None for the embedded
    model or a local folder."""
    bm = config["base_model"]
    if bm["embedded"] or (root / os.path.expanduser(bm["name_or_path"])).is_dir():
        return None
    return bm["name_or_path"], bm.get("revision")


def test_set_names(config: Mapping[str, Any]) -> list[str]:
    return [name for name, ds in config["data"]["test"].items() if ds is not None]


def hub_datasets(config: Mapping[str, Any], root: Path,
                 environ: Mapping[str, str] = os.environ) -> list[tuple[str, HubDataset]]:
    """``(config key, hub dataset)`` of every dataset read from the hub, its exclusions
    included (``<key>.hub.exclude.<i>``)."""
    found = []
    for name in ["train", *test_set_names(config)]:
        src = dataset_source(config, name, root, environ)
        if src.hub is not None:
            found.append((src.key, src.hub))
            found += [(f"{src.key}.hub.exclude.{i}", e) for i, e in enumerate(src.hub.exclude)]
    return found


def missing_sources(config: Mapping[str, Any], root: Path,
                    environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line per configured file that does not exist and, when jobs run offline, per hub
    dataset or base model that is not in the Hugging Face cache."""
    lines = []
    for name in ["train", *test_set_names(config)]:
        src = dataset_source(config, name, root, environ)
        lines += [f"{src.key}: {path} does not exist ({what}; from {src.origin})"
                  for path, what in src.required if not os.path.isfile(path)]
    if not jobs_offline(environ):
        return lines
    for key, spec in hub_datasets(config, root, environ):
        if cached_snapshot(spec.id, spec.revision) is None:
            lines.append(f"{key}: hub dataset {spec.label()} is not in the Hugging Face cache")
    model = base_model_hub(config, root)
    if model and cached_snapshot(model[0], model[1], "model", MODEL_FILES, MODEL_IGNORE) is None:
        lines.append(f"base_model: {model[0]}@{model[1] or 'main'} is not in the Hugging Face cache")
    return lines


def check_sources(config: Mapping[str, Any], root: Path, configfiles: Sequence[str] = (),
                  environ: Mapping[str, str] = os.environ) -> None:
    """Raise :class:`SourceError` listing what :func:`missing_sources` finds, with how to get it."""
    lines = missing_sources(config, root, environ)
    if not lines:
        return
    fetch = "python -m obe.prefetch" + "".join(f" --configfile {shlex.quote(os.path.relpath(f))}" for f in configfiles)
    text = "\n".join(f"  {line}" for line in lines)
    raise SourceError(
        f"data or model missing before any job runs:\n{text}\n"
        f"Jobs run with the hub offline (HF_HUB_OFFLINE=1) and read {hub_cache()}. To fetch what the hub "
        f"provides, run where the hub is reachable (a login node), with the same HF_HOME:\n    {fetch}\n"
        f"To read local files instead, set data_dir (or ${DATA_DIR_VARIABLE}) to a folder laid out as "
        f"<source>/<split>.jsonl (docs/data.md); a missing local file is a path to fix.")
