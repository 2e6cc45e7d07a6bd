"""Shared test helpers: where ../shared/data is, offline hub settings, torch threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# Busy-waiting OpenMP threads make torch 5-10x slower on shared cores; must be set before
# torch is first imported, which no module does before this file runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared datasets folder: $OBE_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("OBE_SHARED_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared datasets not found: set OBE_SHARED_DATA or place shared/data beside the repo")
    return path
