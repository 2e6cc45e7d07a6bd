"""Write repositories into a Hugging Face hub cache the way ``huggingface_hub`` downloads do.

Layout (``huggingface_hub``'s cache, ``$HF_HUB_CACHE``)::

    <cache>/<datasets|models>--<org>--<name>/
        blobs/<etag>                      file contents, named by their etag: the sha256 for files
                                          stored with Git LFS (parquet, safetensors), the git blob
                                          sha1 for the others
        snapshots/<commit>/<path>         relative symlinks to ../../blobs/<etag>
        refs/<branch>                     the commit a branch pointed to when it was downloaded

Nothing here touches the network: tests build the files a hub repository holds (parquet or
JSONL with the hub dataset's columns, a model's config and weights), put them in a temporary
cache with this module, and load them with the hub offline.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LFS_SUFFIXES = (".parquet", ".safetensors", ".arrow", ".bin")


def etag(path: str, data: bytes) -> str:
    if path.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def put_repo(cache: Path, repo_id: str, files: dict[str, bytes], *, repo_type: str = "dataset",
             commit: str | None = None, branch: str | None = "main") -> Path:
    """Store ``files`` (repository path -> bytes) as the snapshot ``commit`` (default: a hash of
    the contents) of ``repo_id``; ``branch`` (if not None) is recorded as pointing to it.
    Returns the snapshot folder."""
    commit = commit or hashlib.sha1(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()
    storage = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    for path, data in files.items():
        blob = storage / "blobs" / etag(path, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    if branch:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / branch).write_text(commit)
    return snapshot


def parquet_bytes(rows: list[dict], tmp: Path) -> bytes:
    """``rows`` as a parquet file, as the hub's ``data/<split>-00000-of-00001.parquet`` holds them."""
    import datasets

    path = tmp / f"rows-{len(rows)}-{abs(hash(str(rows[:1])))}.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path.read_bytes()


def card(config: str, files: dict[str, str]) -> bytes:
    """A README whose YAML header maps a config's splits to file patterns, as hub cards do
    (``configs: - config_name: main, data_files: - split: test, path: main/test-*``)."""
    entries = "".join(f"  - split: {split}\n    path: {pattern}\n" for split, pattern in files.items())
    return f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{entries}---\n".encode()


def parquet_card(config: str, splits: list[str]) -> bytes:
    """The card of a config whose splits are data/<split>-*.parquet (what push_to_hub writes)."""
    return card(config, {s: f"data/{s}-*" for s in splits})
