"""Checkpoint I/O for the RL trainer: atomic, complete, resumable.

Layout of one checkpoint ``OUT/checkpoints/step_N/``::

    model/            HF directory (save_pretrained, safetensors) + tokenizer
    optimizer.pt      optimizer state_dict
    scheduler.pt      LR scheduler state_dict
    rng.pt            torch / python / numpy RNG states
    state.json        step, data position, count table N(x, a), solved questions,
                      byte lengths of metrics.jsonl / rollouts.jsonl, run config

    manifest.json     byte size and sha256 of every other file; written last

Atomicity: everything is written into ``step_N.tmp-<pid>`` (files fsynced), then the
directory is renamed to ``step_N`` (an atomic rename on POSIX). A directory named
``step_N`` is therefore always complete; leftovers ``*.tmp-*`` from a kill are removed by
:func:`clean_partial`. :func:`latest` returns the complete checkpoint with the highest step.
HF snapshots (``final/``, ``snapshots/step_N/``) use the same tmp + rename scheme
(:func:`save_hf_dir`).

Engines name their checkpoints differently (:class:`Layout`): obe.train's ``step_N`` folders
above; the TRL backend's are the HF Trainer's ``checkpoint-<optimizer step>`` folders, written
in place by HF, with the run's state in ``obe_state.json`` and the same manifest written last
(a folder without one is an interrupted save). Listing, verification, the newest good
checkpoint and the state file go through one layout for both.

Integrity: a rename cannot protect against what happens to the files afterwards (a
preempted job on a shared filesystem, a disk that fills while a copy runs, a bit flip).
:func:`verify` checks a checkpoint against its manifest and names the first file that
differs; :func:`newest_verified` returns the newest checkpoint that verifies and moves each
newer one that does not into ``checkpoints/corrupt/`` (with a ``.why.txt`` beside it): a bad
checkpoint is never deleted and never blocks a resume. Checkpoints written before manifests
existed are checked by loading every file instead.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from obe.core.files import ResumeError, file_sha256  # noqa: F401 (the checkpoint API names them too)

STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
CORRUPT_DIR = "corrupt"  # under the checkpoints root: checkpoints that failed verification
FORMAT = "obe.train_checkpoint"
VERSION = 1


@dataclass(frozen=True)
class Layout:
    """How one engine's checkpoints look: ``<prefix><N>`` folders (N: the engine's own counter),
    the run's state in ``state_file`` with ``format``; ``legacy``: a folder without a manifest
    is checked by loading every file (obe.train's checkpoints from before manifests existed)
    instead of being an interrupted save."""

    prefix: str = "step_"
    state_file: str = STATE_FILE
    format: str = FORMAT
    legacy: bool = True

    def number(self, path: str | Path) -> Optional[int]:
        """N of a ``<prefix><N>`` folder name, else None."""
        name = Path(path).name
        tail = name[len(self.prefix):] if name.startswith(self.prefix) else ""
        return int(tail) if tail.isdigit() else None


OBE_LAYOUT = Layout()


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


def publish(tmp: Path, final: Path) -> None:
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
    publish(tmp, path)
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
    write_state(tmp, {**state, "step": int(step)})
    write_manifest(tmp)  # last: a checkpoint with a manifest had every file written before it
    publish(tmp, final)
    if keep > 0:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: str | Path, layout: Layout = OBE_LAYOUT) -> list[Path]:
    """Checkpoint folders under ``root`` that hold a state file, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(layout.number(p), p) for p in root.iterdir()
             if p.is_dir() and layout.number(p) is not None and (p / layout.state_file).is_file()]
    return [p for _, p in sorted(found)]


def latest(root: str | Path, layout: Layout = OBE_LAYOUT) -> Optional[Path]:
    """The newest checkpoint folder, or ``None``."""
    cps = list_checkpoints(root, layout)
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
        if ".old-" in p.name:  # killed between the two renames of publish: put it back
            target = p.with_name(p.name.split(".old-")[0])
            if not target.exists():
                os.rename(p, target)
                continue
        if ".tmp-" in p.name or ".old-" in p.name:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_manifest(path: str | Path) -> None:
    """``path/manifest.json``: the byte size and sha256 of every other file under ``path``."""
    path = Path(path)
    files = {p.relative_to(path).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(path.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE}
    (path / MANIFEST_FILE).write_text(json.dumps({"format": FORMAT + ".manifest", "files": files},
                                                 indent=1, sort_keys=True) + "\n")


def verify(path: str | Path, *, deep: bool = True, layout: Layout = OBE_LAYOUT) -> Optional[str]:
    """Why the checkpoint ``path`` cannot be used (naming the file), or ``None`` if it verifies.

    With a manifest: every listed file must exist with its size and (``deep``) its sha256.
    Without one: every file must load (``layout.legacy``), else the save was interrupted."""
    path = Path(path)
    manifest = path / MANIFEST_FILE
    if not manifest.is_file():
        if not layout.legacy:
            return f"{manifest}: missing (the save did not finish)"
        return _load_every_file(path)
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest}: unreadable manifest ({exc})"
    for rel, want in sorted(files.items()):
        f = path / rel
        if not f.is_file():
            return f"{f}: missing"
        size = f.stat().st_size
        if size != want["bytes"]:
            return f"{f}: {size} bytes, the manifest says {want['bytes']} (truncated or overwritten)"
        if deep and file_sha256(f) != want["sha256"]:
            return f"{f}: sha256 differs from the manifest (corrupted)"
    return None


def _load_every_file(path: Path) -> Optional[str]:
    """Integrity check of a checkpoint without a manifest: parse or load each file."""
    if not (path / STATE_FILE).is_file():
        return f"{path / STATE_FILE}: missing"
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        try:
            if f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".pt":
                torch.load(f, weights_only=True)
            elif f.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(f), framework="pt") as st:
                    for key in st.keys():
                        st.get_tensor(key)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{f}: cannot be loaded ({first})"
    return None


def move_aside(path: str | Path, into: str | Path, why: str) -> Path:
    """Move ``path`` into the folder ``into`` as ``<name>.<UTC time>`` with ``<that>.why.txt``
    beside it; return the new path. Used instead of deleting anything a run computed."""
    path, into = Path(path), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = into / f"{path.name}.{stamp}"
    if dest.exists():
        dest = into / f"{path.name}.{stamp}-{os.getpid()}"
    os.rename(path, dest)
    dest.with_name(dest.name + ".why.txt").write_text(f"{path}: {why}\n")
    _fsync_dir(into)
    _fsync_dir(path.parent)
    return dest


def supersede(out: str | Path, why: str, move: Sequence[Path] = (), copy: Sequence[Path] = ()) -> Path:
    """Set a run's outputs aside instead of deleting them: ``move`` (and copies of ``copy``) go to
    ``out/superseded/<UTC time>/`` at their paths relative to ``out``, with ``why.txt``."""
    out = Path(out)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = out / "superseded" / stamp
    if dest.exists():
        dest = dest.with_name(f"{stamp}-{os.getpid()}")
    dest.mkdir(parents=True)
    for p in copy:
        if Path(p).is_file():
            shutil.copy2(p, dest / Path(p).relative_to(out))
    for p in move:
        if Path(p).exists():
            target = dest / Path(p).relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(p, target)
    (dest / "why.txt").write_text(why + "\n")
    _fsync_dir(dest)
    _fsync_dir(out)
    return dest


def newest_verified(root: str | Path, *, on_skip: Optional[Callable[[str], None]] = None,
                    layout: Layout = OBE_LAYOUT) -> Optional[Path]:
    """The newest checkpoint under ``root`` that :func:`verify` accepts (``None`` if none does).

    Each newer one that fails is moved into ``root/corrupt/`` (never deleted) and reported
    through ``on_skip`` with the file that failed. A folder of the layout without a state file
    (killed before the engine wrote it) counts as a failed one too."""
    root = Path(root)
    if root.is_dir():
        for path in sorted(p for p in root.iterdir() if p.is_dir() and layout.number(p) is not None
                           and not (p / layout.state_file).is_file()):
            dest = move_aside(path, root / CORRUPT_DIR, f"{path / layout.state_file}: missing (the save did not finish)")
            if on_skip is not None:
                on_skip(f"checkpoint {path.name} skipped: no {layout.state_file}; moved to {dest}")
    for path in reversed(list_checkpoints(root, layout)):
        why = verify(path, layout=layout)
        if why is None:
            return path
        dest = move_aside(path, root / CORRUPT_DIR, why)
        if on_skip is not None:
            on_skip(f"checkpoint {path.name} skipped: {why}; moved to {dest}")
    return None


def read_state(path: str | Path, layout: Layout = OBE_LAYOUT) -> dict[str, Any]:
    """The run's state saved in a checkpoint; ResumeError when it is of another format or version."""
    try:
        data = json.loads((Path(path) / layout.state_file).read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{Path(path) / layout.state_file}: unreadable ({exc})") from None
    if data.get("format") != layout.format or data.get("version") != VERSION:
        raise ResumeError(f"{path}: not a {layout.format} v{VERSION} checkpoint; move it aside to resume from an "
                          f"older one, or use another --out")
    return data


def write_state(folder: str | Path, state: dict[str, Any], layout: Layout = OBE_LAYOUT) -> None:
    """``state`` (with ``format`` and ``version``) as the layout's state file in ``folder``, atomically."""
    path = Path(folder) / layout.state_file
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(json.dumps({"format": layout.format, "version": VERSION, **state}, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    fix = "restore it, or move the checkpoint aside to resume from an older one"
    if not path.exists():
        if length:
            raise ResumeError(f"{path} is missing but the checkpoint recorded {length} bytes; {fix}")
        path.touch()
        return
    size = path.stat().st_size
    if size < length:
        raise ResumeError(f"{path} has {size} bytes, shorter than the {length} recorded in the checkpoint; {fix}")
    with open(path, "r+b") as f:
        f.truncate(length)
