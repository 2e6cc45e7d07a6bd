"""Datasets from the Hugging Face hub, read offline from a cache laid out as a download leaves it.

No network: each test writes the files a hub repository holds (parquet or JSONL with the hub
dataset's columns) into a temporary ``huggingface_hub`` cache (tests/hf_cache.py) and reads them
with the hub offline. The preset tests build those files from ../shared/data, so a hub copy and
the local mirror must give byte-identical ``data/*.jsonl``; that the real hub copies hold these
rows (and in this order) is not checked here (docs/data.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_cache import card, parquet_bytes, parquet_card, put_repo
from obe.core import hub
from obe.core.files import file_sha256
from obe import sources
from obe.core.config import load_config
from obe.data import main
from obe.tasks.math_datasets import boxed_answer, math_level

REPO = Path(__file__).resolve().parents[1]
PRESET = "configs/qwen2.5-math-1.5b.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
GSM_ROWS = [{"question": "Two plus two?", "answer": "2+2=4\n#### 4"},
            {"question": "Ten times 100?", "answer": "#### 1,000"}]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """A private, empty hub cache with the hub offline (for in-process calls)."""
    from huggingface_hub import constants
    import datasets

    cache = tmp_path / "home" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "home" / "datasets")
    return cache


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def gsm8k_repo(rows: list[dict]) -> dict[str, bytes]:
    """openai/gsm8k's layout: config main, main/test-*.parquet, here as JSON lines."""
    return {"main/test-00000-of-00001.jsonl": jsonl(rows), "README.md": card("main", {"test": "main/test-*"})}


def test_hub_spec_text_form_round_trips() -> None:
    spec = hub.HubDataset.parse("org/name:default:train,test@abc123")
    assert (spec.id, spec.config, spec.split, spec.revision) == ("org/name", "default", ("train", "test"), "abc123")
    assert hub.HubDataset.parse(spec.spec()) == spec
    assert hub.HubDataset.parse("org/name", "test") == hub.HubDataset("org/name", ("test",))
    from_cfg = hub.HubDataset.from_config({"id": "org/name", "split": ["a", "b"], "exclude": [{"id": "o/x"}]}, "test")
    assert from_cfg.split == ("a", "b") and from_cfg.exclude == (hub.HubDataset("o/x", ("test",)),)
    for bad in ("name-without-org", "org/name:a:b:c", "org/name"):
        with pytest.raises(ValueError):
            hub.HubDataset.parse(bad)


def test_math_levels_from_both_layouts() -> None:
    assert [math_level(v) for v in ("Level 3", 3, "Level ?", None, 0, True)] == ["Level 3", "Level 3", None, None, None, None]


def test_offline_read_takes_the_pinned_revision_not_the_latest(offline_cache, tmp_path) -> None:
    """Two commits in the cache, main at the newer one: each revision reads its own rows
    (datasets.load_dataset(id) offline would take "the latest cached version")."""
    old = put_repo(offline_cache, "openai/gsm8k", gsm8k_repo(GSM_ROWS[:1]), commit="a" * 40)
    put_repo(offline_cache, "openai/gsm8k", gsm8k_repo(GSM_ROWS), commit="b" * 40)
    outs = {}
    for rev in ("a" * 40, "b" * 40, None):
        out = tmp_path / f"{rev}.jsonl"
        args = ["--source", "gsm8k", "--split", "test", "--hub", "openai/gsm8k:main:test", "--out", str(out)]
        assert main(args + (["--revision", rev] if rev else [])) == 0
        outs[rev] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(outs[r]) for r in ("a" * 40, "b" * 40, None)] == [1, 2, 2]
    # ids of a source without its own: <source>/<split>:<line>, as a local gsm8k/test.jsonl gives
    assert [r["id"] for r in outs[None]] == ["gsm8k/test:1", "gsm8k/test:2"] and outs[None][1]["answer"] == "1000"
    manifest = json.loads((tmp_path / "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.manifest.json").read_text())
    assert manifest["inputs"][0]["commit"] == "a" * 40
    files = {f["path"]: f["sha256"] for f in manifest["inputs"][0]["files"]}
    assert files["main/test-00000-of-00001.jsonl"] == file_sha256(old / "main" / "test-00000-of-00001.jsonl")


def test_not_fetched_and_missing_split_are_clear_errors(offline_cache, tmp_path, capsys) -> None:
    out = str(tmp_path / "x.jsonl")
    assert main(["--source", "gsm8k", "--hub", "openai/gsm8k:main:test@" + "c" * 40, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "openai/gsm8k@" + "c" * 40 + " is not available offline" in err and "python -m obe.prefetch" in err
    put_repo(offline_cache, "openai/gsm8k", gsm8k_repo(GSM_ROWS), commit="d" * 40)
    assert main(["--source", "gsm8k", "--hub", "openai/gsm8k:main:validation@" + "d" * 40, "--out", out]) == 2
    assert "validation" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the 1.5B preset


def hub_copies(shared: Path, tmp: Path) -> dict[str, dict[str, bytes]]:
    """The files of each hub repository of the preset, built from the local mirror with the hub
    dataset's own columns: PRM800K's MATH splits (subject, int level, answer, unique_id; train =
    the 12,000, test = MATH-500), MATH-500 as its test.jsonl, AIME 2024 with H4's columns,
    MathArena's AIME 2025 (int answers), the AMC 2023 file (float answers)."""
    def read(name: str) -> list[dict]:
        return [json.loads(line) for line in (shared / name).read_text(encoding="utf-8").splitlines()]

    math500 = read("math500/test.jsonl")
    held_out = {r["unique_id"] for r in math500}
    prm: dict[str, list[dict]] = {"train": [], "test": []}
    for split in ("train", "test"):
        ids = (shared / f"math/{split}_paths.txt").read_text().splitlines()
        for row, uid in zip(read(f"math/{split}.jsonl"), ids):
            level = math_level(row["level"])
            prm["test" if uid in held_out else "train"].append({
                "problem": row["problem"], "solution": row["solution"], "answer": boxed_answer(row["solution"]) or "",
                "subject": row["type"], "level": int(level[-1]) if level else None, "unique_id": uid})
    aime24 = [{"id": r["id"], "problem": r["problem"], "solution": r["solution"], "answer": r["answer"],
               "url": r["url"], "year": "2024"} for r in read("aime24/test.jsonl")]
    aime25 = [{"problem_idx": r["problem_idx"], "problem": r["problem"], "answer": int(r["answer"])}
              for r in read("aime25/test.jsonl")]
    return {
        "nlile/hendrycks-MATH-benchmark": {"README.md": parquet_card("default", ["train", "test"]),
                                           **{f"data/{s}-00000-of-00001.parquet": parquet_bytes(prm[s], tmp) for s in prm}},
        "HuggingFaceH4/MATH-500": {"README.md": b"# MATH-500\n", "test.jsonl": (shared / "math500/test.jsonl").read_bytes()},
        "HuggingFaceH4/aime_2024": {"README.md": parquet_card("default", ["train"]),
                                    "data/train-00000-of-00001.parquet": parquet_bytes(aime24, tmp)},
        "MathArena/aime_2025": {"README.md": parquet_card("default", ["train"]),
                                "data/train-00000-of-00001.parquet": parquet_bytes(aime25, tmp)},
        "FlippyDora/amc23": {"README.md": parquet_card("default", ["train"]),
                             "data/train-00000-of-00001.parquet": parquet_bytes(read("amc23/test.jsonl"), tmp)},
    }


def fill_cache(cache: Path, config: dict, copies: dict[str, dict[str, bytes]]) -> None:
    """Put each repository at the revision the config pins (a made-up commit on main where it
    pins none) and the base model (its config.json is all the load-time check looks for)."""
    for _, spec in sources.hub_datasets(config, REPO, {}):
        put_repo(cache, spec.id, copies[spec.id], commit=spec.revision, branch=None if spec.revision else "main")
    bm = config["base_model"]
    put_repo(cache, bm["name_or_path"], {"config.json": b"{}"}, repo_type="model", commit=bm["revision"], branch=None)


def snakemake(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def clean_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OBE_DATA_DIR", "HF_HUB_CACHE", "HF_DATASETS_CACHE")}
    return {**env, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", **extra}


def test_fresh_clone_dry_run_says_what_is_missing_and_how_to_fetch_it(tmp_path) -> None:
    """No mirror, an empty cache, the hub offline: the dry run fails before any job, listing
    every dataset and the model by config key, with the command that fetches them."""
    res = snakemake("-n", "--cores", "all", "--configfile", PRESET, env=clean_env(tmp_path / "home"))
    said = res.stdout + res.stderr
    assert res.returncode != 0
    for key in ("data.train:", "data.train.hub.exclude.0:", "data.test.math500:", "data.test.aime24:",
                "data.test.aime25:", "data.test.amc23:", "base_model:"):
        assert f"  {key} " in said, said[-3000:]
    assert f"python -m obe.prefetch --configfile {PRESET}" in said
    assert "rule prepare_data" not in said  # no job was planned, let alone run


def test_missing_mirror_file_names_the_key_and_the_path(tmp_path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "math500").mkdir(parents=True)
    (mirror / "math500" / "test.jsonl").write_text("")
    config = load_config(str(REPO / "config.yaml"), str(REPO / PRESET))
    lines = sources.missing_sources(config, REPO, {"OBE_DATA_DIR": str(mirror), "HF_HUB_OFFLINE": "0"})
    assert f"data.train: {mirror}/math/train.jsonl does not exist (a data file; from OBE_DATA_DIR={mirror})" in lines
    assert f"data.test.aime24: {mirror}/aime24/test.jsonl does not exist (a data file; from OBE_DATA_DIR={mirror})" in lines
    assert not any("math500" in line for line in lines)


def test_data_dir_key_wins_over_the_variable_and_resolves_from_the_repository() -> None:
    config = {"data_dir": "../shared/data"}
    assert sources.data_dir(config, REPO, {"OBE_DATA_DIR": "/elsewhere"}) == (
        os.path.relpath(REPO.parent / "shared" / "data"), "data_dir: ../shared/data")
    assert sources.data_dir({"data_dir": None}, REPO, {"OBE_DATA_DIR": "/elsewhere"}) == ("/elsewhere", "OBE_DATA_DIR=/elsewhere")
    assert sources.data_dir({}, REPO, {}) == (None, "")


def test_preset_data_from_a_hub_cache_equals_the_mirror(shared_data, tmp_path) -> None:
    """The acceptance run: the 1.5B preset's data stage through Snakemake, offline, from a cache
    holding hub-shaped copies, gives the same data/*.jsonl as obe.data on the local mirror; the
    mirror's files are inputs of the rule, so a changed file reruns its dataset."""
    config = load_config(str(REPO / "config.yaml"), str(REPO / PRESET))
    home = tmp_path / "home"
    fill_cache(home / "hub", config, hub_copies(shared_data, tmp_path))
    names = ["train", *sources.test_set_names(config)]
    results = tmp_path / "results"
    targets = [str(results / config["experiment"] / "data" / f"{n}.jsonl") for n in names]
    res = snakemake(*targets, "--cores", "2", "--configfile", PRESET, "--config", f"results_dir={results}",
                    env=clean_env(home))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    for name, target in zip(names, targets):
        args = sources.dataset_source(config, name, REPO, {"OBE_DATA_DIR": str(shared_data)}).args
        mirror_out = tmp_path / "mirror" / f"{name}.jsonl"
        assert main(args + ["--out", str(mirror_out)]) == 0
        assert Path(target).read_bytes() == mirror_out.read_bytes(), name
    counts = json.loads((results / config["experiment"] / "data" / "train.manifest.json").read_text())["counts"]
    assert (counts["read"], counts["excluded"], counts["kept"]) == (12500, 500, 11998)

    # the mirror's raw files are inputs: a changed one reruns only its dataset
    mirror = tmp_path / "mirror_copy"
    for sub in ("math", "math500", "aime25"):  # every dataset of the config must exist; two are copied to touch
        (mirror / sub).parent.mkdir(parents=True, exist_ok=True)
        (mirror / sub).symlink_to(shared_data / sub)
    for sub in ("aime24", "amc23"):
        (mirror / sub).mkdir(parents=True)
        (mirror / sub / "test.jsonl").write_bytes((shared_data / sub / "test.jsonl").read_bytes())
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"data_dir": str(mirror), "results_dir": str(tmp_path / "r2")}))
    small = [str(tmp_path / "r2" / config["experiment"] / "data" / f"{n}.jsonl") for n in ("aime24", "amc23")]
    base = ["--cores", "2", "--configfile", PRESET, str(override)]
    assert snakemake(*small, *base, env=clean_env(home)).returncode == 0
    changed = mirror / "amc23" / "test.jsonl"
    changed.write_bytes(changed.read_bytes() + b"\n")  # new content (Snakemake ignores a bare touch)
    later = Path(small[1]).stat().st_mtime + 10
    os.utime(changed, (later, later))
    plan = snakemake(*small, "-n", *base, env=clean_env(home))
    assert plan.returncode == 0, plan.stdout[-3000:]
    assert "wildcards: dataset=amc23" in plan.stdout and "wildcards: dataset=aime24" not in plan.stdout, plan.stdout
