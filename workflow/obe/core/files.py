"""Integrity of what a stage wrote: the sha256 of a file (checkpoint manifests, data manifests,
prefetch records, model identities) and the one error of an output that cannot be resumed as it
stands (a checkpoint or a sampling ``.part`` file)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    """sha256 of a file's bytes, read in 16 MiB chunks (model shards are several GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ResumeError(RuntimeError):
    """An output that cannot be resumed as it stands; the message names the file and the fix."""
