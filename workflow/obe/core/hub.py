"""Hugging Face hub datasets and models, pinned by revision and read from the local cache.

A hub dataset is named by a :class:`HubDataset`: repository id, config, split(s), revision, and
the hub datasets whose problems are removed from it (MATH-500 from MATH). Its rows are read from
the ``huggingface_hub`` cache snapshot of that revision (``snapshot_download``), through
``datasets`` on the snapshot folder. Offline, ``datasets.load_dataset(id)`` would fall back to
"the latest cached version" whatever its revision; reading the snapshot folder instead means a
job reads exactly the pinned files or fails naming them.

Fetching is the one step that needs the network (``python -m obe.prefetch`` on a login node);
every pipeline job runs with ``HF_HUB_OFFLINE=1`` and finds datasets and the base model in the
cache (``$HF_HOME/hub``, ``$HF_HUB_CACHE``). The spec's text form, used on command lines and in
messages, is ``ID[:CONFIG]:SPLIT[,SPLIT...][@REVISION]`` (``ID[@REVISION]`` with the split
given apart), e.g. ``HuggingFaceH4/MATH-500:default:test@6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from obe.core.files import file_sha256

# Files of a causal LM that from_pretrained and vLLM read; `original/` holds Meta's own
# checkpoint format (16 GB more for Llama-3.1-8B), which nothing here reads.
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
MODEL_IGNORE = ["original/*"]

FALSE_VALUES = {"0", "false", "no", "off"}


class NotFetched(FileNotFoundError):
    """A pinned dataset or model that is not in the local Hugging Face cache."""


@dataclass(frozen=True)
class HubDataset:
    """A hub dataset at a revision: which config and split(s) to read, and the hub datasets
    whose problems (by ``unique_id``, else normalized text) are removed from its rows."""

    id: str
    split: tuple[str, ...]
    config: str | None = None
    revision: str | None = None
    exclude: tuple["HubDataset", ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.id or self.id.count("/") != 1 or any(c in self.id for c in ":@ "):
            raise ValueError(f"hub dataset id must be ORG/NAME, got {self.id!r}")
        if not self.split or not all(self.split):
            raise ValueError(f"hub dataset {self.id} needs a split")

    @classmethod
    def from_config(cls, value: str | Mapping[str, Any], default_split: str) -> "HubDataset":
        """A config entry: a bare id (split = the dataset's split) or a mapping with ``id``,
        ``config``, ``split`` (a name or a list), ``revision`` and ``exclude`` (such mappings)."""
        if isinstance(value, str):
            return cls(value, (default_split,))
        split = value.get("split") or default_split
        return cls(
            id=value["id"],
            split=tuple(split) if isinstance(split, (list, tuple)) else (split,),
            config=value.get("config"),
            revision=value.get("revision"),
            exclude=tuple(cls.from_config(e, default_split) for e in value.get("exclude") or ()),
        )

    @classmethod
    def parse(cls, text: str, default_split: str | None = None) -> "HubDataset":
        """The text form ``ID[:CONFIG]:SPLIT[,SPLIT...][@REVISION]`` (or ``ID[@REVISION]`` with
        ``default_split``)."""
        body, _, revision = text.partition("@")
        parts = body.split(":")
        if len(parts) == 1 and default_split:
            parts.append(default_split)
        if len(parts) not in (2, 3):
            raise ValueError(f"hub dataset {text!r}: expected ID[:CONFIG]:SPLIT[,SPLIT][@REVISION]")
        config = parts[1] if len(parts) == 3 else None
        return cls(parts[0], tuple(parts[-1].split(",")), config or None, revision or None)

    def spec(self) -> str:
        """The text form (without exclusions), the inverse of :meth:`parse`."""
        config = f":{self.config}" if self.config else ""
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.id}{config}:{','.join(self.split)}{revision}"

    def label(self) -> str:
        """``ID@REVISION`` (or ``ID@main`` when unpinned), for messages."""
        return f"{self.id}@{self.revision or 'main'}"


# ----------------------------------------------------------------------------- the cache


def jobs_offline(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether pipeline jobs run with the hub offline: rules/common.smk exports
    ``HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}``, so only an explicit false value turns it off."""
    return environ.get("HF_HUB_OFFLINE", "1").strip().lower() not in FALSE_VALUES


def hub_cache() -> Path:
    """Where ``huggingface_hub`` keeps repositories (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str, revision: str | None, repo_type: str = "dataset",
                    allow_patterns: list[str] | None = None,
                    ignore_patterns: list[str] | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (a commit, or a branch/tag that
    a download recorded under ``refs/``), or None when it is not (completely) cached."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_files_only=True,
                                 allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)
    except OSError:  # LocalEntryNotFoundError, IncompleteSnapshotError (a partial download)
        return None
    return Path(path)


def snapshot(repo_id: str, revision: str | None, repo_type: str = "dataset", *, fetch_hint: str = "") -> Path:
    """The snapshot folder to read: from the cache when the hub is offline, else downloaded
    (a no-op when cached). Raises :class:`NotFetched` naming the repository and how to fetch it."""
    from huggingface_hub import constants, snapshot_download

    if not constants.HF_HUB_OFFLINE:
        return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision))
    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_files_only=True))
    except OSError as err:  # not cached, or a partial download: huggingface_hub's first sentence says which
        raise NotFetched(f"{repo_type} {repo_id}@{revision or 'main'} is not available offline in "
                         f"{hub_cache()} ({str(err).split('. ')[0]}){fetch_hint}") from None


def snapshot_files(folder: Path) -> list[dict[str, Any]]:
    """Every file of a snapshot folder: relative path, size, sha256 (symlinks to blobs followed)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [{"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in files]


# ----------------------------------------------------------------------------- rows


def load_split(folder: Path, config: str | None, split: str) -> list[dict[str, Any]]:
    """The rows of one split of a dataset snapshot folder, read by ``datasets`` (the folder's
    README configs, else its file names, say which files make which split)."""
    import datasets
    from huggingface_hub.utils import logging as hub_logging

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hub_logging.set_verbosity_error()  # "Repo card metadata block was not found" for a card without YAML
    table = datasets.load_dataset(str(folder), name=config, split=split)
    return [dict(row) for row in table]
