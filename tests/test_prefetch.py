"""obe.prefetch: fetch once (here: a download stand-in that writes the cache as huggingface_hub
does), record what was fetched, then every job's loading works with the hub offline.

The download itself (network, authentication for gated models) is what cannot run here; the
stand-in receives exactly the arguments snapshot_download would and leaves the same layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_cache import card, parquet_bytes, parquet_card, put_repo
from obe import prefetch
from obe.core.records import Record, write_jsonl
from tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
PRESET = "configs/qwen2.5-math-1.5b.yaml"
MAIN_COMMIT = "f" * 40  # what `main` points to on the stand-in hub


def remote_repos(tmp: Path) -> dict[str, dict[str, bytes]]:
    """A few rows per dataset of the 1.5B preset, in each hub dataset's own columns, and a tiny
    model standing in for Qwen2.5-Math-1.5B."""
    math = [{"problem": f"Compute {i}+{i}.", "solution": f"It is $\\boxed{{{2 * i}}}$.", "answer": str(2 * i),
             "subject": "Algebra", "level": 1 + i % 5, "unique_id": f"{'test' if i < 2 else 'train'}/algebra/{i}.json"}
            for i in range(6)]
    m500 = [{"problem": r["problem"], "solution": r["solution"], "answer": r["answer"], "subject": r["subject"],
             "level": r["level"], "unique_id": r["unique_id"]} for r in math[:2]]
    model_dir = Path(build_tiny_model(tmp / "tiny"))
    return {
        "nlile/hendrycks-MATH-benchmark": {"README.md": parquet_card("default", ["train", "test"]),
                                           "data/train-00000-of-00001.parquet": parquet_bytes(math[2:], tmp),
                                           "data/test-00000-of-00001.parquet": parquet_bytes(math[:2], tmp)},
        "HuggingFaceH4/MATH-500": {"test.jsonl": "".join(json.dumps(r) + "\n" for r in m500).encode()},
        "HuggingFaceH4/aime_2024": {"README.md": parquet_card("default", ["train"]), "data/train-00000-of-00001.parquet":
                                    parquet_bytes([{"id": 60, "problem": "Find 7.", "answer": "007"}], tmp)},
        "MathArena/aime_2025": {"README.md": parquet_card("default", ["train"]), "data/train-00000-of-00001.parquet":
                                parquet_bytes([{"problem_idx": 1, "problem": "Find 70.", "answer": 70}], tmp)},
        "FlippyDora/amc23": {"README.md": card("default", {"train": "data/train-*"}), "data/train-00000-of-00001.parquet":
                             parquet_bytes([{"id": 0, "problem": "Find 27.", "answer": 27.0}], tmp)},
        "Qwen/Qwen2.5-Math-1.5B": {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()},
    }


class StandInHub:
    """Receives snapshot_download's arguments and writes the cache as a download would: a commit
    revision is stored as that snapshot, no revision as `main`'s commit with refs/main."""

    def __init__(self, cache: Path, repos: dict[str, dict[str, bytes]]):
        self.cache, self.repos, self.calls = cache, repos, []

    def __call__(self, repo_id: str, *, repo_type: str, revision: str | None, **patterns) -> str:
        self.calls.append((repo_id, repo_type, revision, patterns))
        return str(put_repo(self.cache, repo_id, self.repos[repo_id], repo_type=repo_type,
                            commit=revision or MAIN_COMMIT, branch=None if revision else "main"))


@pytest.fixture
def hub_home(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants
    import datasets

    home = tmp_path / "home"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the login node
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.delenv("OBE_DATA_DIR", raising=False)
    return home


def test_prefetch_records_every_file_and_then_jobs_run_offline(hub_home, tmp_path, capsys) -> None:
    repos = remote_repos(tmp_path)
    stand_in = StandInHub(hub_home / "hub", repos)
    record_path = tmp_path / "prefetch.json"
    assert prefetch.main(["--configfile", PRESET, "--record", str(record_path)], download=stand_in) == 0
    out = capsys.readouterr().out
    assert "offline check passed" in out
    # the two unpinned datasets are named with the commit to pin
    assert f"data.test.aime25.hub.revision: {MAIN_COMMIT}" in out and f"data.test.amc23.hub.revision: {MAIN_COMMIT}" in out
    record = json.loads(record_path.read_text())
    by_id = {e["id"]: e for e in record["datasets"] + record["models"]}
    assert sorted(by_id) == sorted(repos)
    # MATH-500 is fetched once, for both the test set and the exclusion from MATH train
    assert sorted(by_id["HuggingFaceH4/MATH-500"]["keys"]) == ["data.test.math500", "data.train.hub.exclude.0"]
    assert by_id["nlile/hendrycks-MATH-benchmark"]["rows"] == {"train": 4, "test": 2}
    assert by_id["HuggingFaceH4/aime_2024"]["commit"] == "2fe88a2f1091d5048c0f36abc874fb997b3dd99a"
    for repo_id, files in repos.items():
        assert {f["path"]: f["sha256"] for f in by_id[repo_id]["files"]} == {
            p: hashlib.sha256(b).hexdigest() for p, b in files.items()}, repo_id
    model_call = next(c for c in stand_in.calls if c[1] == "model")
    assert model_call[2] == "4a83ca6e4526a4f2da3aa259ec36c259f66b2ab2" and "original/*" in model_call[3]["ignore_patterns"]

    # a job on a compute node: the preset's base model at its revision, offline, through obe.sampling
    data = tmp_path / "q.jsonl"
    write_jsonl(str(data), [Record(id="q0", problem="1+1?", answer="2", source="synthetic")])
    env = {**os.environ, "HF_HOME": str(hub_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    res = subprocess.run([sys.executable, "-m", "obe.sampling", "--model", "Qwen/Qwen2.5-Math-1.5B",
                          "--revision", "4a83ca6e4526a4f2da3aa259ec36c259f66b2ab2", "--data", str(data), "--n", "2",
                          "--max-new-tokens", "4", "--threads", "1", "--no-progress", "--out", str(tmp_path / "s.jsonl")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 2
    # a download pinned to a commit records no `main`: a loader not given the revision finds nothing offline
    assert not (hub_home / "hub" / "models--Qwen--Qwen2.5-Math-1.5B" / "refs").exists()


def test_prefetch_with_a_local_mirror_fetches_only_the_model(hub_home, tmp_path, monkeypatch) -> None:
    repos = remote_repos(tmp_path)
    stand_in = StandInHub(hub_home / "hub", repos)
    monkeypatch.setenv("OBE_DATA_DIR", str(tmp_path / "mirror"))
    config = prefetch.load_config(str(REPO / "config.yaml"), str(REPO / PRESET))
    record = prefetch.prefetch(config, tmp_path / "p.json", stand_in, log=lambda line: None)
    assert record["datasets"] == [] and [m["id"] for m in record["models"]] == ["Qwen/Qwen2.5-Math-1.5B"]


def test_prefetch_refuses_an_offline_shell(hub_home, monkeypatch, capsys) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert prefetch.main(["--configfile", PRESET]) == 2
    assert "HF_HUB_OFFLINE=0 python -m obe.prefetch" in capsys.readouterr().err
