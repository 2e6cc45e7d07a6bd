"""Fetch every hub dataset and the base model a config names, once, where the hub is reachable.

Pipeline jobs run with the hub offline (compute nodes have no internet); they read the Hugging
Face cache (``$HF_HOME/hub``) that this command fills on a login node. It then writes what it
fetched (repository, config, split, requested revision, resolved commit, and size and sha256
of every file) to a JSON record, and checks the config the way the Snakefile will, offline::

    python -m obe.prefetch --configfile configs/qwen2.5-math-1.5b.yaml
    python -m obe.prefetch --configfile configs/qwen2.5-7b.yaml --record /shared/prefetch-7b.json

``--configfile`` files merge over config.yaml as in Snakemake. With a local mirror (``data_dir``
or ``$OBE_DATA_DIR``) no dataset is fetched. Run it with the ``HF_HOME`` the jobs will have (a
shared file system). A gated model (Llama-3.1) needs a token with access (``hf auth login`` or
``HF_TOKEN``). A dataset whose revision is null is fetched at ``main``; the record and the
summary name its commit, to be pinned in the config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from obe.core import hub
from obe.core.config import ConfigError, load_config
from obe.sources import base_model_hub, hub_datasets, missing_sources

REPO_ROOT = Path(__file__).resolve().parents[2]

# snapshot_download's signature: (repo_id, *, repo_type, revision, allow_patterns, ignore_patterns) -> folder
Download = Callable[..., str]


def _snapshot_download(repo_id: str, **kwargs: Any) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, **kwargs)


def fetch_dataset(spec: hub.HubDataset, download: Download) -> dict[str, Any]:
    """Download one dataset at its revision, read each split once (so a missing split or an
    unreadable file fails here, not in a job) and return its record."""
    folder = Path(download(spec.id, repo_type="dataset", revision=spec.revision))
    rows = {split: len(hub.load_split(folder, spec.config, split)) for split in spec.split}
    return {"id": spec.id, "config": spec.config, "split": list(spec.split), "revision": spec.revision,
            "commit": folder.name, "rows": rows, "files": hub.snapshot_files(folder)}


def fetch_model(repo_id: str, revision: str | None, download: Download) -> dict[str, Any]:
    """Download the files of a causal LM that from_pretrained and vLLM read; return its record."""
    folder = Path(download(repo_id, repo_type="model", revision=revision,
                           allow_patterns=hub.MODEL_FILES, ignore_patterns=hub.MODEL_IGNORE))
    return {"id": repo_id, "revision": revision, "commit": folder.name, "files": hub.snapshot_files(folder)}


def prefetch(config: dict[str, Any], record_path: Path, download: Download = _snapshot_download,
             root: Path = REPO_ROOT, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fetch what ``config`` reads from the hub, write the record, return it. ``download`` is
    ``huggingface_hub.snapshot_download`` (a seam: tests write the cache layout themselves)."""
    record: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "experiment": config["experiment"],
                              "hf_hub_cache": str(hub.hub_cache()), "datasets": [], "models": []}
    fetched: dict[str, dict[str, Any]] = {}
    for key, spec in hub_datasets(config, root):
        label = spec.spec()
        if label not in fetched:
            log(f"dataset {label} ...")
            fetched[label] = fetch_dataset(spec, download)
            record["datasets"].append(fetched[label])
        entry = fetched[label]
        entry.setdefault("keys", []).append(key)
        log(f"  {key}: commit {entry['commit']}, rows {entry['rows']}")
    model = base_model_hub(config, root)
    if model:
        log(f"model {model[0]}@{model[1] or 'main'} ...")
        record["models"].append({**fetch_model(model[0], model[1], download), "keys": ["base_model"]})
        log(f"  base_model: commit {record['models'][0]['commit']}, {len(record['models'][0]['files'])} files")
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def unpinned(record: dict[str, Any]) -> list[str]:
    """``<config key>.revision: <commit>`` for every fetched repository the config does not pin."""
    lines = []
    for entry in record["datasets"] + record["models"]:
        if not entry["revision"]:
            lines += [f"{key}{'.revision' if key == 'base_model' else '.hub.revision'}: {entry['commit']}"
                      for key in entry["keys"]]
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m obe.prefetch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Run where the hub is reachable, with the HF_HOME the jobs use; "
                                       "docs/paper_scale.md has the whole procedure.")
    p.add_argument("--configfile", nargs="+", default=[], metavar="FILE",
                   help="config files merged over config.yaml, as given to snakemake")
    p.add_argument("--record", type=Path,
                   help="where to write the record (default: <results_dir>/<experiment>/prefetch.json)")
    return p


def main(argv: Sequence[str] | None = None, download: Download = _snapshot_download) -> int:
    args = build_parser().parse_args(argv)
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        print("error: HF_HUB_OFFLINE is set in this shell; fetching needs the hub: "
              "HF_HUB_OFFLINE=0 python -m obe.prefetch ...", file=sys.stderr)
        return 2
    try:
        config = load_config(str(REPO_ROOT / "config.yaml"), *args.configfile)
    except (OSError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    record_path = args.record or Path(config["results_dir"]) / config["experiment"] / "prefetch.json"
    try:
        record = prefetch(config, record_path, download)
    except Exception as err:  # noqa: BLE001 - network, auth (gated models), a missing split: say which and stop
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if not record["datasets"] and not record["models"]:
        print("nothing to fetch: every dataset is local or synthetic and the base model is embedded or a folder")
    print(f"record {record_path}")
    for line in unpinned(record):
        print(f"not pinned in the config; to read these rows again, set {line}")
    problems = missing_sources(config, REPO_ROOT, {**os.environ, "HF_HUB_OFFLINE": "1"})
    for line in problems:
        print(f"still missing: {line}", file=sys.stderr)
    if problems:
        return 1
    print("offline check passed: jobs will find every dataset and the base model in the cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
