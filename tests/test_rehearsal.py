"""The GPU presets' own code paths, rehearsed on CPU: `--configfile configs/<preset>.yaml
configs/rehearsal.yaml` for each of the three paper-scale presets.

What a first GPU run needs, asserted on one DAG run per preset (module-scoped fixture):
the DAG runs to report.html with the preset's trainer (the trl backend under the preset's own
accelerate config, as many gloo CPU processes as the overlay gives it); the stand-in base model
is of the preset's family, with a chat template exactly when the preset uses one; the training
rollouts have no `<error>` outcome keys, some correct rows and a non-zero reward at some step;
every checkpoint's count tables are identical on all ranks (`counts_digest_by_rank`); the run
ends with a checkpoint of its last step; the snapshots and final/ hold weights that load and
are the ones the DAG evaluated.

On a 2-process preset, one training job driven directly (its command taken from the DAG's train
rule, another --out): kill -9 mid-epoch and a rerun give the uninterrupted run's data order,
counts and metrics; SIGTERM to the job (as Slurm sends it: every process) makes both ranks save
the same step and exit 143, and the rerun ends as the uninterrupted run. A training moment is
reached through the trainers' callback seam (`--callback`, tests/seams.py's HoldAfterStep).

To keep CI within its budget the two Qwen presets rehearse one method (ucb_con) instead of the
overlay's two (grpo, ucb_con): a method changes the advantages, not the preset's code path, and
the Llama rehearsal keeps both. Each DAG run prints its wall time (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, shared_data_dir

pytest.importorskip("trl", reason="trl is not installed (pip install -e '.[test]')")

from obe.core.config import cpu_processes_per_node, deep_merge, load_config  # noqa: E402
from obe.grading import SENTINEL_KEYS  # noqa: E402
from obe.training.metrics import TIMING_KEYS  # noqa: E402

OVERLAY = "configs/rehearsal.yaml"
# preset -> (accelerate config of its training job, gloo processes in the rehearsal)
PRESETS = {
    "llama-3.1-8b-instruct": ("fsdp.yaml", 2),
    "qwen2.5-7b": ("fsdp.yaml", 2),
    "qwen2.5-math-1.5b": ("one_gpu.yaml", 1),
}
# methods trained in CI where they differ from the overlay's (see the module docstring)
CI_METHODS = {"qwen2.5-7b": ["ucb_con"], "qwen2.5-math-1.5b": ["ucb_con"]}
ERROR_KEY = "<error>"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
STATE_FILE = "obe_state.json"  # the trl backend's state in each checkpoint
pytestmark = pytest.mark.slow


def run_env() -> dict[str, str]:
    """What the train rule's shell prefix gives a job: this interpreter first, the package on the path."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(REPO_ROOT / "workflow"), OMP_WAIT_POLICY="PASSIVE")
    for key in ("WANDB_MODE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.setdefault(key, "disabled" if key == "WANDB_MODE" else "1")
    return env


def mirror_overrides(cfg: dict, data_dir: Path) -> dict:
    """Config that points the preset's datasets at ``data_dir`` where it names ../shared/data (the
    mirror beside the repository), so a $OBE_SHARED_DATA elsewhere works too."""
    default = "../shared/data"

    def moved(value):
        return str(data_dir) + value[len(default):] if isinstance(value, str) and value.startswith(default) else value

    out: dict = {"data": {"train": {}, "test": {}}}
    for name, ds in [("train", cfg["data"]["train"]), *cfg["data"]["test"].items()]:
        if ds is None:
            continue
        change = {k: moved(ds[k]) for k in ("path", "data_dir") if ds.get(k) and moved(ds[k]) != ds[k]}
        if change:
            (out["data"] if name == "train" else out["data"]["test"])[name] = change
    if isinstance(cfg.get("data_dir"), str):
        out["data_dir"] = moved(cfg["data_dir"])
    return out


@dataclass
class Rehearsal:
    preset: str
    cfg: dict  # the merged configuration
    root: Path  # results/<experiment>
    log: str  # Snakemake's output (-p: every job's command)
    wall_s: float

    @property
    def runs(self) -> list[str]:
        return [f"{m}__s{s}" for m in self.cfg["train"]["methods"] for s in self.cfg["train"]["seeds"]]

    @property
    def test_sets(self) -> list[str]:
        return [name for name, ds in self.cfg["data"]["test"].items() if ds is not None]

    @property
    def eval_steps(self) -> list[int]:
        return sorted(set(self.cfg["evaluation"]["steps"]) | {self.cfg["train"]["steps"]})

    def train_command(self, run: str) -> str:
        """The train rule's command for ``run`` as Snakemake ran it, up to the log redirection."""
        for m in re.finditer(r"(env TORCH_ELASTIC_SHUTDOWN_TIMEOUT=\d+ )?python -m obe\.engines\.launch ", self.log):
            cmd = self.log[m.start():self.log.index(" > ", m.start())]
            if f" --out {self.root / 'train' / run} " in cmd:
                return cmd
        raise AssertionError(f"no train command for {run} in the DAG's output")


def configfiles(preset: str, extra: Path) -> list[str]:
    return [f"configs/{preset}.yaml", OVERLAY, str(extra)]


@pytest.fixture(scope="module", params=list(PRESETS))
def rehearsal(request, tmp_path_factory) -> Rehearsal:
    """One rehearsal DAG of the preset, to report.html."""
    data_dir = shared_data_dir()
    if data_dir is None:
        pytest.skip("shared datasets not found: set OBE_SHARED_DATA or place shared/data beside the repo")
    preset = request.param
    tmp = tmp_path_factory.mktemp(preset)
    cfg = load_config(str(REPO_ROOT / "config.yaml"), str(REPO_ROOT / "configs" / f"{preset}.yaml"), str(REPO_ROOT / OVERLAY))
    extra = tmp / "mirror.yaml"
    overrides = dict(mirror_overrides(cfg, data_dir), results_dir=str(tmp / "results"))
    if preset in CI_METHODS:
        overrides = deep_merge(overrides, {"train": {"methods": CI_METHODS[preset]}})
    extra.write_text(yaml.safe_dump(overrides))
    cfg = deep_merge(cfg, yaml.safe_load(extra.read_text()))
    t0 = time.monotonic()
    res = subprocess.run([SNAKEMAKE, "--cores", "2", "-p", "--configfile", *configfiles(preset, extra)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=1800, env=run_env())
    wall = time.monotonic() - t0
    log = res.stdout + res.stderr
    print(f"\nrehearsal of {preset}: {wall:.0f} s wall, load {os.getloadavg()[0]:.1f}")
    assert res.returncode == 0, log[-6000:]
    return Rehearsal(preset, cfg, tmp / "results" / cfg["experiment"], log, wall)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checkpoints(run_dir: Path) -> dict[int, Path]:
    """The trl backend's checkpoints of a run: {optimizer step: folder}."""
    folder = run_dir / "checkpoints"
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()] if folder.is_dir() else []
    return {int(p.name.split("-")[-1]): p for p in found}


def state(folder: Path) -> dict:
    return json.loads((folder / STATE_FILE).read_text())


def rank_digests(folder: Path) -> list[str]:
    """The checkpoint's sha256 of each rank's count table, in rank order (a list, or a mapping by rank)."""
    digests = state(folder).get("counts_digest_by_rank")
    assert digests is not None, f"{folder}/{STATE_FILE} has no counts_digest_by_rank"
    return [digests[k] for k in sorted(digests, key=int)] if isinstance(digests, dict) else list(digests)


def data_order(run_dir: Path) -> list[tuple[int, list[str]]]:
    """The question ids of each step, in the rollouts' order (one per group of samples)."""
    by_step: dict[int, list[str]] = {}
    for r in rows(run_dir / "rollouts.jsonl"):
        ids = by_step.setdefault(r["step"], [])
        if not ids or ids[-1] != r["question_id"] or r["sample_index"] == 0:
            ids.append(r["question_id"])
    return sorted(by_step.items())


def metrics_without_timing(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows(run_dir / "metrics.jsonl")]


# -- the DAG of each preset ----------------------------------------------------------------------


def test_the_dag_trains_with_the_presets_launcher_to_the_report(rehearsal):
    accel, procs = PRESETS[rehearsal.preset]
    assert cpu_processes_per_node(rehearsal.cfg) == procs
    assert (rehearsal.root / "report.html").stat().st_size > 10_000
    for run in rehearsal.runs:
        cmd = rehearsal.train_command(run)
        assert f"--config_file {REPO_ROOT / 'configs' / 'accelerate' / accel} " in cmd
        assert (f" --num_processes {procs} " in cmd) if procs > 1 else ("--num_processes" not in cmd)
        assert "-m obe.engines.trl_backend" in cmd and "--device cpu" in cmd and "--vllm" not in cmd
        run_cfg = json.loads((rehearsal.root / "train" / run / "config.json").read_text())
        assert run_cfg["backend"] == "trl"
        # the preset's own training settings reached the trainer
        t, bm = rehearsal.cfg["train"], rehearsal.cfg["base_model"]
        assert (run_cfg["micro_batch"], run_cfg["gradient_checkpointing"], run_cfg["master_weights"]) == (
            t["micro_batch"], t["gradient_checkpointing"], t["master_weights"])
        assert (run_cfg["dtype"], run_cfg["use_chat_template"], run_cfg["prompt_template"]) == (
            bm["dtype"], bm["use_chat_template"], bm["prompt_template"])
        # every rank ran: each one saves its RNG state in each checkpoint
        for folder in checkpoints(rehearsal.root / "train" / run).values():
            assert sorted(p.name for p in folder.glob("rng_state*.pth")) == (
                [f"rng_state_{r}.pth" for r in range(procs)] if procs > 1 else ["rng_state.pth"])
    assert (rehearsal.root / "logged_evals").is_dir() and (rehearsal.root / "analysis" / "analysis.json").is_file()


def test_the_stand_in_is_of_the_presets_family_and_chat_format(rehearsal):
    from transformers import AutoConfig, AutoTokenizer

    bm = rehearsal.cfg["base_model"]
    folder = rehearsal.root / "base_model"
    family = "llama" if "llama" in bm["name_or_path"].lower() else "qwen2"
    assert AutoConfig.from_pretrained(folder).model_type == family
    tok = AutoTokenizer.from_pretrained(folder)
    chat = bm["use_chat_template"] == "always"
    assert bool(tok.chat_template) == chat
    markers = {"llama": "<|start_header_id|>", "qwen2": "<|im_start|>"}[family]
    prompt = rows(rehearsal.root / "graded" / "base" / "step0" / "train.jsonl")[0]["prompt"]  # as the DAG sampled it
    assert (markers in prompt) == chat
    report = json.loads((folder / "base_model_report.json").read_text())
    assert report["stand_in_for"] == bm["name_or_path"] and report["family"] == family
    # the datasets' text is covered: no unknown token in any prepared question
    for d in ["train", *rehearsal.test_sets]:
        for r in rows(rehearsal.root / "data" / f"{d}.jsonl"):
            assert tok.decode(tok(r["problem"], add_special_tokens=False)["input_ids"]) == r["problem"]


def test_training_rollouts_have_real_rewards(rehearsal):
    for run in rehearsal.runs:
        run_dir = rehearsal.root / "train" / run
        rollouts = rows(run_dir / "rollouts.jsonl")
        keys = Counter(r["outcome_key"] for r in rollouts)
        assert ERROR_KEY not in keys, keys
        assert any(r["correct"] for r in rollouts) and not all(r["correct"] for r in rollouts)
        assert len(set(keys) - set(SENTINEL_KEYS)) > 1, keys  # several different answers
        assert any(r["reward"] > 0 for r in rows(run_dir / "metrics.jsonl"))
        assert len(data_order(run_dir)) == rehearsal.cfg["train"]["steps"]


def test_evaluations_see_answers_and_some_right_ones(rehearsal):
    graded = [r for run in rehearsal.runs for step in rehearsal.eval_steps for d in rehearsal.test_sets
              for r in rows(rehearsal.root / "graded" / run / f"step{step}" / f"{d}.jsonl")]
    assert graded and all(r["outcome_key"] != ERROR_KEY for r in graded)
    assert any(r["correct"] for r in graded) and any(r["outcome_key"] not in SENTINEL_KEYS for r in graded)
    summaries = [json.loads((rehearsal.root / "eval" / run / f"step{step}" / d / "summary.json").read_text())
                 for run in rehearsal.runs for step in rehearsal.eval_steps for d in rehearsal.test_sets]
    assert any(s["pass_at_k"]["1"] > 0 for s in summaries)


def test_every_checkpoint_has_the_same_count_table_on_every_rank(rehearsal):
    _, procs = PRESETS[rehearsal.preset]
    for run in rehearsal.runs:
        found = checkpoints(rehearsal.root / "train" / run)
        assert found, run
        for folder in found.values():
            digests = rank_digests(folder)
            assert len(digests) == procs and len(set(digests)) == 1, (folder, digests)


def test_the_run_ends_with_a_checkpoint_of_its_last_step(rehearsal):
    steps = rehearsal.cfg["train"]["steps"]
    for run in rehearsal.runs:
        run_dir = rehearsal.root / "train" / run
        found = checkpoints(run_dir)
        newest = found[max(found)]
        assert state(newest)["step"] == steps, (run, sorted(found))
        done = json.loads((run_dir / "done.json").read_text())
        assert done["steps"] == steps and done["metrics_rows"] == steps


def test_snapshots_and_final_hold_weights_that_load_and_were_evaluated(rehearsal):
    import torch
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(rehearsal.root / "base_model").state_dict()
    last = rehearsal.cfg["train"]["steps"]
    for run in rehearsal.runs:
        run_dir = rehearsal.root / "train" / run
        weights = {}
        for name in [f"snapshots/step_{s}" for s in rehearsal.eval_steps] + ["final"]:
            model = AutoModelForCausalLM.from_pretrained(run_dir / name)
            sd = model.state_dict()
            assert set(sd) == set(base) and all(sd[k].shape == base[k].shape for k in base), (run, name)
            assert all(torch.isfinite(v).all() for v in sd.values()), (run, name)
            weights[name] = sd
        final, last_snapshot = weights["final"], weights[f"snapshots/step_{last}"]
        assert all(torch.equal(final[k], last_snapshot[k]) for k in final)  # final/ is the evaluated last step
        for step in rehearsal.eval_steps:  # the DAG sampled exactly these folders
            for d in rehearsal.test_sets:
                meta = json.loads((rehearsal.root / "samples" / run / f"step{step}" / f"{d}.jsonl.meta.json").read_text())
                assert Path(meta["model"]["name_or_path"]) == run_dir / "snapshots" / f"step_{step}"
                assert (rehearsal.root / "eval" / run / f"step{step}" / d / "summary.json").is_file()


# -- one training job of a 2-process preset, driven directly --------------------------------------


def start(cmd: str, log: Path) -> subprocess.Popen:
    """The job in a process group of its own, as a batch job's (the signal reaches every process)."""
    with open(log, "w") as fh:
        return subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=REPO_ROOT, env=run_env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


def hold_after(method: str, step: int) -> str:
    spec = f"tests/seams.py:HoldAfterStep={json.dumps({'method': method, 'step': step})}"
    return f" --callback {shlex.quote(spec)}"


def wait_for_rows(proc: subprocess.Popen, metrics: Path, count: int, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= count):
        assert proc.poll() is None, f"the job ended (exit {proc.returncode}) before step {count}\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no step {count} after {timeout} s\n{log.read_text()[-4000:]}"
        time.sleep(0.05)


def signal_when_held(cmd: str, method: str, held: int, out: Path, sig: int, log: Path) -> int:
    """Run the job ``cmd`` holding after step ``held``, send ``sig`` to its process group there,
    and return its exit status."""
    proc = start(cmd + hold_after(method, held), log)
    try:
        wait_for_rows(proc, out / "metrics.jsonl", held, log)
        os.killpg(proc.pid, sig)
        return proc.wait(timeout=300)
    finally:
        _stop(proc)


def finish(cmd: str, log: Path) -> None:
    res = subprocess.run(["bash", "-c", f"exec {cmd}"], cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True,
                         timeout=900)
    log.write_text(res.stdout + res.stderr)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]


def assert_same_run(resumed: Path, straight: Path) -> None:
    """Same data order, metrics (timing aside) and count tables as the uninterrupted run."""
    assert data_order(resumed) == data_order(straight)
    assert metrics_without_timing(resumed) == metrics_without_timing(straight)
    a, b = checkpoints(resumed), checkpoints(straight)
    assert sorted(a) == sorted(b)
    for step in a:
        sa, sb = state(a[step]), state(b[step])
        assert sa["counts"] == sb["counts"] and rank_digests(a[step]) == rank_digests(b[step]), step


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("rehearsal", ["llama-3.1-8b-instruct"], indirect=True)
def test_kill_9_mid_epoch_then_rerun_gives_the_uninterrupted_run(rehearsal, tmp_path):
    """ucb_con (its advantages read the count table): the fresh run holds after step 3, between
    the checkpoints of steps 2 and 4, and is killed there; the rerun resumes from step 2, mid-epoch
    (12 questions, 4 a step), and replays steps 3 and 4 across the epoch boundary."""
    method, t = "ucb_con", rehearsal.cfg["train"]
    every, held = t["checkpoint_every"], t["checkpoint_every"] + 1  # killed one step past a checkpoint
    questions = len(rows(rehearsal.root / "data" / "train.jsonl"))
    assert held < t["steps"] and (every * t["batch_questions"]) % questions, "the checkpoint is not mid-epoch"
    run = f"{method}__s0"
    out, log = tmp_path / run, tmp_path / "killed.log"
    cmd = f"{rehearsal.train_command(run)} --out {shlex.quote(str(out))}"
    signal_when_held(cmd, method, held, out, signal.SIGKILL, log)
    assert max(checkpoints(out)) == every * t["mu"], sorted(checkpoints(out))
    assert len(rows(out / "metrics.jsonl")) == held and not (out / "final").exists()
    finish(cmd, tmp_path / "rerun.log")
    assert_same_run(out, rehearsal.root / "train" / run)
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("rehearsal", ["qwen2.5-7b"], indirect=True)
def test_sigterm_makes_every_rank_save_the_same_step_and_exit_143(rehearsal, tmp_path):
    """SIGTERM to every process of the job (Slurm's time limit or preemption) while it holds after
    step 1: both ranks checkpoint step 1 and stop, the job exits 143; the rerun ends as the
    uninterrupted run."""
    method, held = "ucb_con", 1
    run = f"{method}__s0"
    out, log = tmp_path / run, tmp_path / "termed.log"
    cmd = f"{rehearsal.train_command(run)} --out {shlex.quote(str(out))}"
    rc = signal_when_held(cmd, method, held, out, signal.SIGTERM, log)
    assert rc == 143, f"exit {rc}\n{log.read_text()[-4000:]}"
    found = checkpoints(out)
    assert [state(f)["step"] for f in found.values()] == [held], sorted(found)
    saved = found[max(found)]
    procs = PRESETS[rehearsal.preset][1]
    assert sorted(p.name for p in saved.glob("rng_state*.pth")) == [f"rng_state_{r}.pth" for r in range(procs)]
    digests = rank_digests(saved)
    assert len(digests) == procs and len(set(digests)) == 1
    assert len(rows(out / "metrics.jsonl")) == held and not (out / "final").exists()
    finish(cmd, tmp_path / "rerun.log")
    assert_same_run(out, rehearsal.root / "train" / run)


# -- the overlay's keys, without running anything ------------------------------------------------


def dry_run(*configs: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "2", "--configfile", *configs, "--config",
                           f"results_dir={tmp}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=run_env())


def test_question_caps_reach_every_dataset(tmp_path):
    res = dry_run("configs/qwen2.5-7b.yaml", OVERLAY, tmp=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    data = re.findall(r"python -m obe\.data (.*?) --out \S+/data/(\w+)\.jsonl", res.stdout)
    assert {name for _, name in data} == {"train", "math500", "aime24", "aime25", "amc23"}
    for args, name in data:
        assert f"--limit {12 if name == 'train' else 8} --seed 0" in args, (name, args)


@pytest.mark.parametrize("change,error", [
    ({"train": {"backend": "obe"}}, "hardware.cpu_processes: 2 needs train.backend: trl"),
    ({"train": {"batch_questions": 3, "n": 3}}, "does not divide the 9 rollouts of a step"),
    ({"train": {"micro_batch": 3}}, "train.micro_batch: 3 does not divide the 8 rollouts of each of the 2 ranks"),
], ids=["obe-backend", "batch-over-processes", "micro-batch"])
def test_cpu_processes_are_validated(tmp_path, change, error):
    from obe.core.config import ConfigError, validate_config

    cfg = load_config(str(REPO_ROOT / "config.yaml"), str(REPO_ROOT / "configs" / "qwen2.5-7b.yaml"), str(REPO_ROOT / OVERLAY))
    if change["train"].get("backend") == "obe":
        change = deep_merge(change, {"hardware": {"sharding": "none"}})
    with pytest.raises(ConfigError, match=re.escape(error)):
        validate_config(deep_merge(cfg, change))


def test_the_overlay_is_merged_after_a_preset():
    from obe.core.config import ConfigError

    for preset in PRESETS:
        cfg = load_config(str(REPO_ROOT / "config.yaml"), str(REPO_ROOT / "configs" / f"{preset}.yaml"), str(REPO_ROOT / OVERLAY))
        assert cfg["base_model"]["size"] == "rehearsal" and cfg["device"] == "cpu" and cfg["sampling"]["backend"] == "hf"
    with pytest.raises(ConfigError, match="base_model.name_or_path: base_model.size rehearsal"):
        load_config(str(REPO_ROOT / "config.yaml"), str(REPO_ROOT / OVERLAY))
