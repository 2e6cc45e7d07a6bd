"""Checkpoint I/O for the RL trainer: atomic, complete, resumable.

Layout of one checkpoint ``OUT/checkpoints/step_N/``::

    model/            HF directory (save_pretrained, safetensors) + tokenizer
    optimizer.pt      optimizer state_dict
    scheduler.pt      LR scheduler state_dict
    rng.pt            torch / python / numpy RNG states
    state.json        step, data position, count table N(x, a), solved questions,
                      byte lengths of metrics.jsonl / rollouts.jsonl, run config

Atomicity: everything is written into ``step_N.tmp-<pid>`` (files fsynced), then the
directory is renamed to ``step_N`` (an atomic rename on POSIX). A directory named
``step_N`` is therefore always complete; leftovers ``*.tmp-*`` from a kill are removed by
:func:`clean_partial`. :func:`latest` returns the complete checkpoint with the highest step.
HF snapshots (``final/``, ``snapshots/step_N/``) use the same tmp + rename scheme
(:func:`save_hf_dir`).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

STATE_FILE = "state.json"
FORMAT = "obe.train_checkpoint"
VERSION = 1
_STEP_RE = re.compile(r"^step_(\d+)$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def _publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` and atomically rename it to ``final`` (replacing an older one)."""
    _fsync_tree(tmp)
    if final.exists():  # e.g. re-saving the same step after a resume: swap via a trash dir
        trash = final.with_name(final.name + f".old-{os.getpid()}")
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(final.parent)


def rng_state() -> dict[str, Any]:
    # numpy's key array goes in as a tensor so the file loads with weights_only=True
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_hf_dir(path: str | Path, model, tokenizer) -> Path:
    """Write an HF model directory (safetensors + tokenizer) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    _publish(tmp, path)
    return path


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    model,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict[str, Any],
    keep: int = 0,
) -> Path:
    """Write ``root/step_{step}`` atomically; return its path.

    ``state`` is JSON-serialisable trainer state (data position, counts, file lengths,
    ...); ``step`` is added. ``keep > 0`` deletes all but the ``keep`` newest checkpoints
    after the new one is in place.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f"step_{step}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(str(tmp / "model"), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp / "model"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict() if scheduler is not None else {}, tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    payload = {"format": FORMAT, "version": VERSION, **state, "step": int(step)}
    (tmp / STATE_FILE).write_text(json.dumps(payload, sort_keys=True) + "\n")
    _publish(tmp, final)
    if keep > 0:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest(root: str | Path) -> Optional[Path]:
    """The newest complete checkpoint, or ``None``."""
    cps = list_checkpoints(root)
    return cps[-1] if cps else None


def clean_partial(root: str | Path) -> list[Path]:
    """Remove ``*.tmp-*`` leftovers of interrupted saves (and ``*.old-*`` ones, or rename such a
    directory back when a kill struck between the two renames of a replacement); return what
    was removed."""
    root = Path(root)
    removed = []
    if not root.is_dir():
        return removed
    for p in sorted(root.iterdir()):
        if ".old-" in p.name:  # killed between the two renames of _publish: put it back
            target = p.with_name(p.name.split(".old-")[0])
            if not target.exists():
                os.rename(p, target)
                continue
        if ".tmp-" in p.name or ".old-" in p.name:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_state(path: str | Path) -> dict[str, Any]:
    data = json.loads((Path(path) / STATE_FILE).read_text())
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{VERSION} checkpoint")
    return data


def load_checkpoint(path: str | Path, *, optimizer: torch.optim.Optimizer, scheduler, restore_rng: bool = True) -> dict[str, Any]:
    """Load optimizer / scheduler / RNG state from ``path`` (the model is loaded by the caller
    from ``path/model`` with ``from_pretrained``); return the JSON state."""
    path = Path(path)
    state = read_state(path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if restore_rng:
        set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return state


def truncate_file(path: str | Path, length: int) -> None:
    """Cut ``path`` back to ``length`` bytes (create it empty if missing and length is 0)."""
    path = Path(path)
    if not path.exists():
        if length:
            raise RuntimeError(f"{path} is missing but the checkpoint recorded {length} bytes")
        path.touch()
        return
    size = path.stat().st_size
    if size < length:
        raise RuntimeError(f"{path} has {size} bytes, shorter than the {length} recorded in the checkpoint")
    with open(path, "r+b") as f:
        f.truncate(length)
