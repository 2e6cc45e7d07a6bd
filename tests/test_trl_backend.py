"""The exploration methods on TRL's ``GRPOTrainer`` (obe.engines.trl_backend), on CPU with a tiny random model.

(a) On fixed completions (tests/trl_backend_worker.py), the per-token advantages the TRL
    backend hands to TRL's loss equal obe's (computed here with obe.train's pieces: grade,
    ``exploration_step``, ``answer_token_mask``, ``token_advantages``), for every method and
    option, over 3 steps (so the count table matters).
(b) With c = 0 (every method) a step equals plain ``GRPOTrainer``'s: advantages, loss, gradient
    norm, parameter update (1e-6 relative; obe's adv_eps set to TRL's 1e-4).
(c) 2 processes (torchrun, gloo): both ranks hold the same count table and solved set, equal to
    a 1-process run on the same completions; the outputs (rollouts, metrics) match too.
(d) SIGKILL during step 3 and rerun: resumes from checkpoint-2 with the count table restored;
    outputs equal an uninterrupted run's.
Plus: the overridden TRL / transformers methods are the pinned ones (source hashes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl", reason="trl is not installed (pip install -e '.[test]')")

from obe.core import checkpoint as ckpt  # noqa: E402
from obe.engines import trl_backend, trl_trainer  # noqa: E402
from obe.rl.advantages import binary_rewards  # noqa: E402
from obe.rl.bonuses import exploration_step, token_advantages  # noqa: E402
from obe.rl.counts import OutcomeCounts  # noqa: E402
from obe.grading import ExtractConfig, grade  # noqa: E402
from obe.engines.models import render_template  # noqa: E402
from obe.core.records import read_jsonl, write_jsonl  # noqa: E402
from obe.engines.rollout import answer_token_mask, completion_mask  # noqa: E402
from obe.tasks.synthetic import make_split  # noqa: E402
from obe.training.config import TrainConfig  # noqa: E402
from obe.training.metrics import TIMING_KEYS  # noqa: E402

from tiny_model import build_tiny_model  # noqa: E402
from trl_backend_worker import FixedRollouts, always_solved  # noqa: E402

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "trl_backend_worker.py"
TEMPLATE = "{problem}\n"
B, N, MAX_NEW, STEPS = 4, 4, 24, 3
TOL = 1e-6
EXTRA = {name: default for name, (_, default, _) in trl_backend.EXTRA.items()}


def latest_checkpoint(root: Path):
    return ckpt.latest(root, trl_trainer.TRL_LAYOUT)


def checkpoint_state(folder: Path) -> dict:
    return ckpt.read_state(folder, trl_trainer.TRL_LAYOUT)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trl_backend")
    model_dir = build_tiny_model(root / "model", seed=3, hidden_size=32)
    recs = make_split("train", 8, seed=0)
    write_jsonl(str(root / "train.jsonl"), recs)
    # (b): one step sees the whole of these B questions whatever the sampler's order (the backend
    # seeds TRL's sampler per epoch, plain GRPOTrainer once), so both trainers get the same batch
    write_jsonl(str(root / "train4.jsonl"), recs[:B])
    gold = {render_template(TEMPLATE, r.problem): r.answer for r in recs}
    assert any(always_solved(p) for p in gold) and not all(always_solved(p) for p in gold)
    return dict(root=root, model_dir=model_dir, data=str(root / "train.jsonl"), data4=str(root / "train4.jsonl"),
                recs=recs, gold=gold,
                qid={render_template(TEMPLATE, r.problem): r.id for r in recs},
                tok=AutoTokenizer.from_pretrained(model_dir))


def make_cfg(s, out: Path, **kw) -> TrainConfig:
    base = dict(model=s["model_dir"], train_data=s["data"], out=str(out), steps=STEPS, batch_questions=B, n=N,
                max_new_tokens=MAX_NEW, lr=1e-3, threads=1, checkpoint_every=100, prompt_template=TEMPLATE,
                agg="token_mean")
    return TrainConfig(**{**base, **kw})


class Capture:
    """Per step: every (prompt ids, completion ids) row's advantages as TRL's loss sees them."""

    def __init__(self):
        self.steps: list[dict] = []
        self.grads: dict = {}

    def hook(self, trainer, inputs, loss):
        rows = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1).tolist()
        masks = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1).tolist()
        P = inputs["prompt_ids"].shape[1]
        adv = inputs["advantages"]
        adv = adv[:, None].expand(inputs["completion_ids"].shape) if adv.dim() == 1 else adv
        step: dict = {"loss": float(loss.detach()), "rows": defaultdict(list)}
        for ids, m, a, cm in zip(rows, masks, adv.tolist(), inputs["completion_mask"].tolist()):
            prompt = tuple(i for i, keep in zip(ids[:P], m[:P]) if keep)
            comp = tuple(i for i, keep in zip(ids[P:], m[P:]) if keep)
            step["rows"][(prompt, comp)].append([x for x, keep in zip(a, cm) if keep])
        self.steps.append(step)


def run_trainer(s, cfg: TrainConfig, tmp: Path, plain: bool = False) -> tuple[Capture, dict, dict]:
    """Train ``cfg`` in-process on the fixed completions; returns (capture, log rows, parameter update)."""
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOTrainer

    from obe.grading import grade as grade_fn

    cap = Capture()
    ds = trl_trainer.train_dataset(read_jsonl(cfg.train_data), cfg, s["tok"])
    args = trl_trainer.grpo_args(cfg, EXTRA, 1)
    args.output_dir = str(tmp)
    args.save_strategy = "no"
    rollouts = FixedRollouts(s["tok"], s["gold"], MAX_NEW, by="occurrence")

    class Grads(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            cap.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    def hooked(base):
        class Hooked(base):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                cap.hook(self, inputs, loss)
                return loss
        return Hooked

    model = AutoModelForCausalLM.from_pretrained(s["model_dir"], dtype=torch.float32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    kw = dict(model=model, args=args, processing_class=s["tok"], train_dataset=ds, rollout_func=rollouts,
              callbacks=[Grads()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if plain:
            def correct(prompts, completions, answer, **_):
                return [float(grade_fn(c, a).correct) for c, a in zip(completions, answer)]
            trainer = hooked(GRPOTrainer)(reward_funcs=[correct], **kw)
        else:
            trainer = hooked(trl_trainer.trainer_class())(exploration=cfg.exploration(), advantage=cfg.advantage(),
                                                          extract=ExtractConfig(cfg.reward_extract), **kw)
        trainer.train()
    logs = [r for r in trainer.state.log_history if "grad_norm" in r]
    update = {n: p.detach() - before[n] for n, p in model.named_parameters()}
    return cap, logs, update


def obe_reference(s, cap: Capture, cfg: TrainConfig) -> list[dict]:
    """obe.train's per-token advantages for the rows TRL trained on, step by step."""
    tok = s["tok"]
    eos = tok.eos_token_id
    counts = OutcomeCounts()
    explore, adv_cfg = cfg.exploration(), cfg.advantage()
    prompt_text = {tuple(tok(p)["input_ids"]): p for p in s["gold"]}
    out = []
    for step in cap.steps:
        groups: dict = defaultdict(list)  # question -> [(row key, completion ids, text)]
        for (pids, cids), _ in step["rows"].items():
            groups[prompt_text[pids]].append(((pids, cids), list(cids), tok.decode(list(cids), skip_special_tokens=True)))
        # a question whose group holds two identical completions shows up once per distinct row
        sizes = {p: len(rows) for p, rows in groups.items()}
        qs = sorted(groups)
        mult = {p: [len(step["rows"][k]) for k, _, _ in groups[p]] for p in qs}
        assert all(sum(mult[p]) == N for p in qs), (sizes, mult)
        samples = [(k, c, t) for p in qs for (k, c, t), m in zip(groups[p], mult[p]) for _ in range(m)]
        graded = [grade(t, s["gold"][p], config=ExtractConfig(cfg.reward_extract)) for p in qs for (_, _, t), m in zip(groups[p], mult[p]) for _ in range(m)]
        keys = [[g.outcome_key for g in graded[b * N:(b + 1) * N]] for b in range(len(qs))]
        rewards = binary_rewards([[g.correct for g in graded[b * N:(b + 1) * N]] for b in range(len(qs))])
        adv_Bn, bonus_Bn = exploration_step(rewards, keys, [s["qid"][p] for p in qs], counts, explore, adv_cfg)
        width = max(len(c) for _, c, _ in samples)
        c_ids = torch.full((len(samples), width), tok.pad_token_id, dtype=torch.long)
        for i, (_, c, _) in enumerate(samples):
            c_ids[i, :len(c)] = torch.tensor(c)
        c_mask = completion_mask(c_ids, [eos]) * (torch.arange(width)[None] < torch.tensor([len(c) for _, c, _ in samples])[:, None])
        amask = answer_token_mask(tok, c_ids, c_mask, [t for _, _, t in samples])
        tok_adv = token_advantages(adv_Bn.reshape(-1), bonus_Bn.reshape(-1), amask, explore.coef, explore.mask_answer_tokens)
        ref: dict = defaultdict(list)
        for i, (k, c, _) in enumerate(samples):
            ref[k].append(tok_adv[i, :len(c)].tolist())
        out.append(dict(ref=ref, rewards=rewards, bonus=bonus_Bn))
    return out


VARIANTS = [
    ("grpo", {}), ("ucb", {}), ("ucb", {"count_before_update": False}), ("ucb_mean", {}),
    ("ucb_mean", {"leave_one_out": True}), ("ucb_con", {}), ("ucb_con", {"gate_solved": False}),
    ("ucb_con", {"mask_answer_tokens": False}), ("ucb_con", {"reward_extract": "boxed"}), ("batch", {}),
    ("batch", {"bonus_in_reward": True}), ("ucb_con", {"mu": 2}),
]


@pytest.mark.slow
@pytest.mark.parametrize("method,opts", VARIANTS, ids=[m + "".join(f"-{k}={v}" for k, v in o.items()) for m, o in VARIANTS])
def test_token_advantages_equal_obe(setup, tmp_path, method, opts):
    cfg = make_cfg(setup, tmp_path / "run", method=method, **opts)
    cap, _, _ = run_trainer(setup, cfg, tmp_path / "trl")
    assert len(cap.steps) == STEPS * cfg.mu
    if cfg.mu > 1:  # the batch's mu updates all see its advantages (the counts moved once per batch)
        for i in range(0, len(cap.steps), cfg.mu):
            assert all(cap.steps[j]["rows"] == cap.steps[i]["rows"] for j in range(i, i + cfg.mu))
        cap.steps = cap.steps[::cfg.mu]
    ref = obe_reference(setup, cap, cfg)
    seen = {"solved": False, "mixed": False, "bonus": False, "masked": False}
    for step, r in zip(cap.steps, ref):
        assert set(step["rows"]) == set(r["ref"])
        for key, got in step["rows"].items():
            want = r["ref"][key]
            assert len(got) == len(want)
            for g, w in zip(got, want):  # identical completions of one question have identical advantages
                assert torch.allclose(torch.tensor(g, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                                      rtol=0, atol=TOL), (key, g, w)
                seen["masked"] |= len(set(w)) > 1
        solved = r["rewards"].amin(dim=1) > 0.5
        seen["solved"] |= bool(solved.any())
        seen["mixed"] |= bool(((r["rewards"].amax(dim=1) > 0.5) & ~solved).any())
        seen["bonus"] |= bool(r["bonus"].any())
    assert seen["solved"] and seen["mixed"], seen  # the data exercise gating and normalisation
    if method != "grpo" and not opts.get("bonus_in_reward"):
        assert seen["bonus"]
        assert seen["masked"] == opts.get("mask_answer_tokens", True)


def _rel(a, b) -> float:
    if isinstance(a, dict):
        num = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in b) ** 0.5
        den = sum(float(b[k].double().pow(2).sum()) for k in b) ** 0.5
    else:
        num, den = abs(a - b), abs(b)
    return num / den if den > 0 else num


@pytest.mark.slow
@pytest.mark.parametrize("method,mu", [("grpo", 1), ("ucb", 1), ("ucb_mean", 1), ("ucb_con", 1), ("batch", 1),
                                       ("ucb_con", 2)])
def test_coef_zero_equals_plain_grpo_trainer(setup, tmp_path, method, mu):
    # TRL's normalisation; mu = 2: both take two updates on the batch, compared after the second
    kw = dict(steps=1, adv_eps=1e-4, std="sample", scale="group", train_data=setup["data4"], mu=mu)
    plain_cap, plain_logs, plain_upd = run_trainer(setup, make_cfg(setup, tmp_path / "a", method="grpo", **kw),
                                                    tmp_path / "plain", plain=True)
    plain_grads = plain_cap.grads
    cap, logs, upd = run_trainer(setup, make_cfg(setup, tmp_path / "b", method=method, coef=0.0, **kw), tmp_path / "obe")
    assert set(cap.steps[0]["rows"]) == set(plain_cap.steps[0]["rows"])
    for key, rows in plain_cap.steps[0]["rows"].items():
        for g, w in zip(cap.steps[0]["rows"][key], rows):
            assert torch.allclose(torch.tensor(g), torch.tensor(w), rtol=0, atol=TOL)
    # The two batches come in different row orders (the samplers differ), so sums round differently
    # (~1e-7 of the gradient); AdamW's first step, ~lr * g / |g|, turns that into O(lr) changes where
    # |g| is near 0: compare the update where the gradient is not tiny (as tests/test_trl_parity.py).
    assert len(cap.steps) == len(plain_cap.steps) == mu and len(logs) == len(plain_logs) == mu
    g_norm = logs[-1]["grad_norm"]
    keep = {k: ~((plain_grads[k] != 0) & (plain_grads[k].abs() < 1e-5 * g_norm)) for k in plain_grads}
    diffs = {"loss": _rel(cap.steps[-1]["loss"], plain_cap.steps[-1]["loss"]),
             "grad_norm": _rel(logs[-1]["grad_norm"], plain_logs[-1]["grad_norm"]),
             "gradient": _rel(cap.grads, plain_grads),
             "update": _rel({k: upd[k] * keep[k] for k in upd}, {k: plain_upd[k] * keep[k] for k in upd})}
    assert plain_logs[0]["grad_norm"] > 0
    # mu = 2: the first Adam step's O(lr) differences on tiny-gradient entries feed the second
    # step's moments, so the two-step update is compared to 1e-5 (measured 1.4e-6); the second
    # step's loss and gradient still agree to 1e-6
    tol = {"update": TOL if mu == 1 else 1e-5}
    assert all(v <= tol.get(k, TOL) for k, v in diffs.items()), diffs


def test_overridden_methods_are_the_pinned_ones():
    """An upgrade of trl or transformers that changes a method the backend overrides or relies
    on fails here: re-read it, adapt obe/engines/trl_trainer.py, then update PINNED_SOURCES."""
    assert trl.__version__ == trl_trainer.TRL_VERSION
    assert trl_trainer.pinned_source_hashes() == trl_trainer.PINNED_SOURCES
    src = __import__("inspect").getsource(trl.GRPOTrainer._compute_loss)
    assert "if advantages.dim() == 1:" in src  # per-token advantages [B, T] pass through


# -- CLI runs: distributed counts, resume ---------------------------------------------------------


def worker(s, out: Path, *extra_flags: str, nproc: int = 1, worker_flags=(), check=True, **kw):
    flags = ["--model", s["model_dir"], "--train-data", s["data"], "--out", str(out), "--steps", str(kw.pop("steps", 4)),
             "--batch-questions", str(B), "--n", str(N), "--max-new-tokens", str(MAX_NEW), "--threads", "1",
             "--prompt-template", TEMPLATE, "--method", kw.pop("method", "ucb_con"), *extra_flags]
    cmd = [sys.executable, str(WORKER), *worker_flags, "--dump-counts", "--", *flags]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(29500 + os.getpid() % 1000), *cmd[1:]]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO / 'workflow'}:{REPO / 'tests'}")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and res.returncode != 0:
        raise AssertionError(f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}")
    return res


def _rows(path: Path, drop=()) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_keep_identical_count_tables(setup, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    worker(setup, one)
    worker(setup, two, nproc=2)
    t0, t1, t = (json.loads((two / f"counts_rank{r}.json").read_text()) for r in (0, 1)), None, None
    t0, t1 = list(t0)
    t = json.loads((one / "counts_rank0.json").read_text())
    assert t0 == t1 == t
    table = OutcomeCounts.from_dict(t["counts"])
    assert table.total() == 4 * B * N and table.num_questions() == len(setup["recs"])
    assert _rows(one / "rollouts.jsonl") == _rows(two / "rollouts.jsonl")
    # the loss differs in the last bits (2 x half-batch micro-steps vs 1); the rollout side is exact
    drop = TIMING_KEYS | {"loss", "grad_norm", "entropy", "clip_ratio", "clip_ratio/low", "clip_ratio/high"}
    assert _rows(one / "metrics.jsonl", drop) == _rows(two / "metrics.jsonl", drop)
    last = latest_checkpoint(two / "checkpoints")
    assert OutcomeCounts.from_dict(checkpoint_state(last)["counts"]) == table


@pytest.mark.slow
def test_killed_run_resumes_with_the_count_table(setup, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # 5 steps: the last one is mid-epoch (8 questions, 4 per step), where HF's resume would train one more
    flags = ("--checkpoint-every", "2", "--save-steps", "2", "--steps", "5")
    worker(setup, straight, *flags)
    res = worker(setup, killed, *flags, worker_flags=("--kill-at-step", "3"), check=False)
    assert res.returncode == -9, res.stderr[-3000:]
    ck = latest_checkpoint(killed / "checkpoints")
    assert ck is not None and ck.name == "checkpoint-2"
    saved = OutcomeCounts.from_dict(checkpoint_state(ck)["counts"])
    assert saved.total() == 2 * B * N
    res = worker(setup, killed, *flags)
    assert "resuming from" in res.stderr and "checkpoint-2" in res.stderr
    assert _rows(killed / "rollouts.jsonl") == _rows(straight / "rollouts.jsonl")
    assert _rows(killed / "metrics.jsonl", TIMING_KEYS) == _rows(straight / "metrics.jsonl", TIMING_KEYS)
    a, b = (json.loads((d / "counts_rank0.json").read_text()) for d in (killed, straight))
    assert a == b
    done = trl_backend.done_record(killed)
    assert done["steps"] == 5 and done["metrics_rows"] == 5 and len(done["snapshots"]) == 1
    assert (killed / "snapshots" / "step_2" / "model.safetensors").is_file() and (killed / "final" / "config.json").is_file()
    # killed after the last checkpoint, before final/: the rerun trains no step more, writes final/
    from safetensors.torch import load_file

    before = load_file(str(killed / "final" / "model.safetensors"))
    shutil.rmtree(killed / "final")
    worker(setup, killed, *flags)
    after = load_file(str(killed / "final" / "model.safetensors"))
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert trl_backend.done_record(killed) == done
    # same outputs as obe.train: the same keys in metrics.jsonl and rollouts.jsonl, same done.json fields
    from obe.training.run_dir import done_record as obe_done_record
    from obe.train import train as obe_train

    ref = tmp_path / "obe"
    obe_train(make_cfg(setup, ref, steps=2, method="ucb_con", checkpoint_every=2, save_steps=(2,)))
    for name in ("metrics.jsonl", "rollouts.jsonl"):
        assert set(_rows(ref / name)[0]) == set(_rows(killed / name)[0]), name
    assert set(obe_done_record(ref)) == set(done)


# -- (e) the smoke DAG with train.backend: trl -----------------------------------------------------


@pytest.mark.slow
def test_smoke_dag_with_the_trl_backend(tmp_path):
    """The whole smoke DAG with `train.backend: trl`: the train rule starts obe.engines.trl_backend
    through `accelerate launch` (configs/accelerate/cpu.yaml) and every downstream rule (evaluation
    of the snapshots, analysis, report) runs unchanged; snakemake --report builds."""
    override = tmp_path / "trl.yaml"
    override.write_text("train:\n  backend: trl\n")
    snakemake = str(Path(sys.executable).parent / "snakemake")
    base = ["--cores", "2", "-p", "--configfile", "configs/smoke.yaml", str(override), "--config",
            f"results_dir={tmp_path / 'results'}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([snakemake, *base], cwd=REPO, capture_output=True, text=True, timeout=3000, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    root = tmp_path / "results" / "smoke"
    for run in ("grpo__s0", "batch__s0"):
        folder = root / "train" / run
        assert json.loads((folder / "config.json").read_text())["backend"] == "trl"
        done = json.loads((folder / "done.json").read_text())
        assert done["steps"] == 4 and done["metrics_rows"] == 4
        assert latest_checkpoint(folder / "checkpoints") is not None
        assert (root / "eval" / run / "step4" / "synthetic" / "summary.json").exists()
    assert "<img" in (root / "report.html").read_text()
    assert "python -m obe.engines.launch --config_file" in out.stdout + out.stderr  # the rule's command
    rep = subprocess.run([snakemake, "--report", str(tmp_path / "report.html"), *base], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env=env)
    assert rep.returncode == 0, (rep.stdout + rep.stderr)[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_lora_switch_saves_plain_merged_snapshots(setup, tmp_path):
    """--lora-r > 0 trains a LoRA adapter through TRL's peft_config; the snapshots and final/
    are plain HF checkpoints (adapter merged) that evaluation loads like the base model."""
    pytest.importorskip("peft", reason="peft is not installed (it comes with the gpu extra)")
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    worker(setup, out, "--lora-r", "4", "--lora-alpha", "8", "--lr", "0.05", "--save-steps", "1", steps=2)
    ck = latest_checkpoint(out / "checkpoints")
    assert (ck / "adapter_model.safetensors").is_file()  # the checkpoint holds the adapter, not the model
    base = load_file(str(Path(setup["model_dir"]) / "model.safetensors"))
    for folder in (out / "snapshots" / "step_1", out / "final"):
        merged = load_file(str(folder / "model.safetensors"))
        assert set(merged) == set(base)  # no lora_A / base_layer names: a plain checkpoint
        changed = [k for k in base if not torch.equal(base[k], merged[k])]
        assert changed and all(k.endswith("proj.weight") for k in changed), changed


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.mark.parametrize("chat,system", [(False, ""), (False, "Be brief."), (True, ""), (True, "Be brief.")])
def test_trl_gets_the_prompts_obe_train_builds(setup, tmp_path, chat, system):
    """TRL tokenizes the backend's dataset prompts into exactly obe.train's prompt ids
    (obe.engines.models.build_prompts: chat template, system prompt, special tokens once)."""
    from transformers import AutoTokenizer

    from obe.engines.models import ModelConfig, build_prompts, prompt_adds_special_tokens
    from obe.engines.generation import tokenize_prompts

    model_dir = build_tiny_model(tmp_path / "m", chat_template=CHAT_TEMPLATE if chat else None)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = make_cfg(setup, tmp_path / "o", model=model_dir, system_prompt=system, steps=1,
                   use_chat_template="always" if chat else "auto")
    recs = setup["recs"][:3]
    pcfg = ModelConfig(name_or_path=model_dir, prompt_template=TEMPLATE, use_chat_template=cfg.use_chat_template,
                       system_prompt=system or None)
    want = tokenize_prompts(tok, build_prompts(tok, [r.problem for r in recs], pcfg), prompt_adds_special_tokens(tok, pcfg))
    ds = trl_trainer.train_dataset(recs, cfg, tok)
    args = trl_trainer.grpo_args(cfg, EXTRA, 1)
    args.output_dir = str(tmp_path / "trl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl_trainer.trainer_class()(model=model_dir, args=args, processing_class=tok, train_dataset=ds,
                                              exploration=cfg.exploration(), advantage=cfg.advantage())
    got, _, _ = trainer._tokenize_prompts(list(ds["prompt"]))
    assert [list(x) for x in got] == want
    assert sum(x == tok.bos_token_id for x in want[0]) == 1


def test_wandb_gets_the_metrics_rows_and_the_completions_table(setup, tmp_path, monkeypatch):
    """The trl backend logs to W&B what obe.train logs: each metrics.jsonl row (null values left
    out) and, every log_completions_every steps, the completions table with obe.train's columns."""
    import obe.core.tracking
    from obe.training.metrics import COMPLETION_COLUMNS

    logged: dict = {"rows": [], "tables": []}

    class Recorder(obe.core.tracking.NullTracker):
        def log(self, row, step=None):
            logged["rows"].append((step, dict(row)))

        def log_table(self, name, columns, rows, step=None):
            logged["tables"].append((name, tuple(columns), rows, step))

    monkeypatch.setattr(obe.core.tracking, "start_run", lambda **kw: Recorder())
    out = tmp_path / "run"
    cfg = make_cfg(setup, out, steps=2, method="ucb", log_completions_every=2)
    from trl_backend_worker import FixedRollouts as Fixed

    gold = {render_template(TEMPLATE, r.problem): r.answer for r in setup["recs"]}
    trl_backend.run(cfg, EXTRA, rollout_func=Fixed(setup["tok"], gold, MAX_NEW))
    rows = _rows(out / "metrics.jsonl")
    assert [s for s, _ in logged["rows"]] == [1, 2]
    assert [r for _, r in logged["rows"]] == [{k: v for k, v in row.items() if v is not None} for row in rows]
    assert [(t[0], t[1], t[3], len(t[2])) for t in logged["tables"]] == [
        ("completions", COMPLETION_COLUMNS, 1, B * N), ("completions", COMPLETION_COLUMNS, 2, B * N)]
    first = logged["tables"][0][2]
    assert all(len(r) == len(COMPLETION_COLUMNS) and r[0] == 1 for r in first)
    assert {r[1] for r in first} == {r["question_id"] for r in _rows(out / "rollouts.jsonl") if r["step"] == 1}


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_and_exits_143(setup, tmp_path):
    """SIGTERM (Slurm's time limit, preemption) during step 3: the step finishes, checkpoint-3 is
    saved, the process exits 143 without final/; the rerun resumes there and ends as a straight run."""
    straight, termed = tmp_path / "straight", tmp_path / "termed"
    flags = ("--checkpoint-every", "10", "--steps", "4")
    worker(setup, straight, *flags)
    res = worker(setup, termed, *flags, worker_flags=("--term-at-step", "3"), check=False)
    assert res.returncode == 143, res.stderr[-3000:]
    assert "signal 15 received; checkpoint saved at step 3" in res.stderr
    ck = latest_checkpoint(termed / "checkpoints")
    assert ck.name == "checkpoint-3" and not (termed / "final").exists()
    assert len(_rows(termed / "metrics.jsonl")) == 3
    worker(setup, termed, *flags)
    assert _rows(termed / "rollouts.jsonl") == _rows(straight / "rollouts.jsonl")
    assert _rows(termed / "metrics.jsonl", TIMING_KEYS) == _rows(straight / "metrics.jsonl", TIMING_KEYS)
    assert trl_backend.done_record(termed)["steps"] == 4


def _train_command(preset: str, tmp_path: Path) -> list[str]:
    snakemake = str(Path(sys.executable).parent / "snakemake")
    # a plan only: HF_HUB_OFFLINE=0 lets the load check skip the model and datasets no test cache holds
    out = subprocess.run([snakemake, "-n", "-p", "--configfile", preset, "--config", f"results_dir={tmp_path}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "0"})
    assert out.returncode == 0, out.stderr[-3000:]
    start = out.stdout.index("python -m obe.engines.launch")
    return __import__("shlex").split(out.stdout[start:out.stdout.index(" > ", start)])


@pytest.mark.parametrize("preset,grace", [("configs/qwen2.5-7b.yaml", 900), ("configs/llama-3.1-8b-instruct.yaml", 900),
                                          ("configs/qwen2.5-math-1.5b.yaml", 600)])
def test_gpu_presets_leave_a_preempted_job_time_to_checkpoint(tmp_path, preset, grace):
    """Slurm's SIGTERM comes stop_grace_s before the time limit (--signal=TERM@S), and torchrun
    waits as long for the ranks' agreed checkpoint before killing them (its own default is 30 s)."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    out = subprocess.run([snakemake, "-n", "-p", "--configfile", preset, "--config", f"results_dir={tmp_path}",
                          "--profile", "slurm"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "0"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"TORCH_ELASTIC_SHUTDOWN_TIMEOUT={grace} python -m obe.engines.launch" in out.stdout
    assert f"--signal=TERM@{grace}" in out.stdout


@pytest.mark.parametrize("preset", ["configs/qwen2.5-7b.yaml", "configs/llama-3.1-8b-instruct.yaml"])
def test_gpu_presets_launch_the_trl_backend_with_fsdp_and_vllm_colocate(tmp_path, preset):
    """The 7-8B presets' train jobs: accelerate launch with configs/accelerate/fsdp.yaml (FSDP2) over the
    node's 8 GPUs, vLLM colocated, bf16 compute with fp32 master weights; the flags parse and the
    batch splits into whole micro-batches on 8 ranks. (A dry run: no GPU here.)"""
    import yaml

    argv = _train_command(preset, tmp_path)
    i = argv.index("obe.engines.trl_backend")
    launcher = argv[:i + 1]
    assert launcher[:3] == ["python", "-m", "obe.engines.launch"] and launcher[-2:] == ["-m", "obe.engines.trl_backend"]
    assert Path(launcher[launcher.index("--config_file") + 1]) == REPO / "configs" / "accelerate" / "fsdp.yaml"
    assert launcher[launcher.index("--num_processes") + 1] == "8"
    accel = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp.yaml").read_text())
    assert accel["distributed_type"] == "FSDP" and accel["fsdp_config"]["fsdp_version"] == 2
    cfg, extra, _ = trl_backend.parse(argv[i + 1:])
    assert extra["vllm"] == "colocate" and extra["vllm_gpu_memory_utilization"] == 0.4 and extra["vllm_max_model_len"] > 0
    assert (cfg.device, cfg.dtype, cfg.master_weights, cfg.gradient_checkpointing) == ("cuda", "bfloat16", "float32", True)
    micro, accumulation = trl_trainer.batch_layout(cfg, 8)
    assert micro * accumulation * 8 == cfg.batch_questions * cfg.n and micro == cfg.micro_batch
    if "instruct" in preset:
        assert cfg.use_chat_template != "never"  # trains on the chat prompts it is evaluated on


def test_the_1_5b_preset_trains_with_the_trl_backend_on_one_gpu_with_colocated_vllm(tmp_path):
    """Qwen2.5-Math-1.5B: one process on one GPU (one_gpu.yaml), vLLM colocated at the share
    docs/scale.md computes for it, update micro-batches of 2 in bf16 with fp32 master weights."""
    argv = _train_command("configs/qwen2.5-math-1.5b.yaml", tmp_path)
    i = argv.index("obe.engines.trl_backend")
    assert Path(argv[argv.index("--config_file") + 1]) == REPO / "configs" / "accelerate" / "one_gpu.yaml"
    assert argv[argv.index("--num_processes") + 1] == "1"
    cfg, extra, _ = trl_backend.parse(argv[i + 1:])
    assert extra["vllm"] == "colocate" and extra["vllm_gpu_memory_utilization"] == 0.25
    assert (cfg.dtype, cfg.master_weights, cfg.micro_batch, cfg.gradient_checkpointing) == ("bfloat16", "float32", 2, True)


@pytest.mark.slow
def test_mu_updates_per_batch(setup, tmp_path):
    """mu = 2: two optimizer steps per rollout batch (TRL's num_iterations); one metrics row, one
    count-table update and obe's step numbering per batch; checkpoints and done.json in obe steps."""
    out = tmp_path / "mu2"
    worker(setup, out, "--mu", "2", "--checkpoint-every", "1", "--save-steps", "1", steps=2)
    rows = _rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    state = checkpoint_state(latest_checkpoint(out / "checkpoints"))
    assert state["step"] == 2 and state["global_step"] == 4
    assert OutcomeCounts.from_dict(state["counts"]).total() == 2 * B * N
    done = trl_backend.done_record(out)
    assert done["steps"] == 2 and done["metrics_rows"] == 2 and [Path(p).name for p in done["snapshots"]] == ["step_1"]


@pytest.mark.slow
def test_resume_with_another_config_is_refused_or_restarted(setup, tmp_path):
    """As obe.train: a checkpoint made with other settings is refused (the default) or, with
    --on-config-change restart (what the train rule passes), the run starts over."""
    out = tmp_path / "run"
    worker(setup, out, "--checkpoint-every", "1", steps=2)
    res = worker(setup, out, "--checkpoint-every", "1", "--coef", "0.5", steps=2, check=False)
    assert res.returncode != 0 and "different config (coef)" in res.stderr
    res = worker(setup, out, "--checkpoint-every", "1", "--coef", "0.5", "--lora-r", "0", "--vllm", "off",
                 "--on-config-change", "restart", steps=2)
    assert "starting over" in res.stderr
    assert json.loads((out / "config.json").read_text())["coef"] == 0.5
    assert [r["step"] for r in _rows(out / "metrics.jsonl")] == [1, 2]
    assert checkpoint_state(latest_checkpoint(out / "checkpoints"))["config"]["coef"] == 0.5
    # the first run is set aside, not deleted (obe.train's rule for a changed config holds here too)
    (aside,) = (out / "superseded").iterdir()
    assert "different config (coef)" in (aside / "why.txt").read_text()
    assert json.loads((aside / "config.json").read_text())["coef"] != 0.5
    assert [r["step"] for r in _rows(aside / "metrics.jsonl")] == [1, 2] and (aside / "checkpoints").is_dir()


def test_a_moved_project_resumes(setup, tmp_path):
    """The checkpoint records what the initial model is (obe.training.run_dir.model_identity), not its path:
    the whole folder tree copied elsewhere resumes instead of restarting."""
    import shutil

    out = tmp_path / "a" / "run"
    worker(setup, out, "--checkpoint-every", "1", steps=2)
    moved = tmp_path / "b"
    shutil.copytree(setup["root"], moved / "setup")
    shutil.copytree(out, moved / "run")
    moved_setup = {**setup, "model_dir": str(moved / "setup" / Path(setup["model_dir"]).relative_to(setup["root"])),
                   "data": str(moved / "setup" / Path(setup["data"]).relative_to(setup["root"]))}
    res = worker(moved_setup, moved / "run", "--checkpoint-every", "1", steps=3)
    assert "starting over" not in res.stderr and not (moved / "run" / "superseded").exists()
    assert [r["step"] for r in _rows(moved / "run" / "metrics.jsonl")] == [1, 2, 3]


def test_completion_text_reads_strings_and_assistant_messages():
    assert trl_trainer.completion_text("so \\boxed{3}") == "so \\boxed{3}"
    assert trl_trainer.completion_text([{"role": "assistant", "content": "so \\boxed{3}"}]) == "so \\boxed{3}"
    with pytest.raises(TypeError, match="not a completion"):
        trl_trainer.completion_text([{"role": "assistant", "content": None}])
    with pytest.raises(TypeError, match="not a completion"):
        trl_trainer.completion_text(3)


def test_chat_prompts_are_graded_on_the_completion_text(setup, tmp_path):
    """With a chat template TRL hands the reward function assistant messages, not strings: the
    rewards, outcome keys and rollouts must be those of the text (a list graded as is was
    '<error>' with reward 0 on every sample)."""
    from transformers import AutoTokenizer

    model_dir = build_tiny_model(tmp_path / "m", seed=3, hidden_size=32, chat_template=CHAT_TEMPLATE)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = make_cfg(setup, tmp_path / "run", model=model_dir, steps=2, use_chat_template="always")
    rendered = {r.problem: tok.apply_chat_template([{"role": "user", "content": render_template(TEMPLATE, r.problem)}],
                                                   tokenize=False, add_generation_prompt=True) for r in setup["recs"]}
    gold = {rendered[r.problem]: r.answer for r in setup["recs"]}
    trl_backend.run(cfg, EXTRA, rollout_func=FixedRollouts(tok, gold, MAX_NEW))
    rows = _rows(tmp_path / "run" / "rollouts.jsonl")
    assert len(rows) == 2 * B * N
    assert not any(r["outcome_key"] == "<error>" for r in rows)
    assert any(r["correct"] for r in rows) and not all(r["correct"] for r in rows)


# -- several processes: resume mid-epoch, an agreed stop, a corrupt checkpoint -----------------------


@pytest.mark.slow
def test_two_processes_killed_mid_epoch_resume_the_same_data_order(setup, tmp_path):
    """2 ranks, 8 questions of 4 per step: checkpoint-3 lies mid-epoch (step 3 opens epoch 1).
    Killed at step 5 and rerun, the run resumes at step 3 and replays the uninterrupted run's
    questions, count tables and metrics. (accelerate's resumed multi-process dataloader does not
    forward set_epoch to the sampler: the order came out of epoch 0's shuffle before.)"""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    flags = ("--checkpoint-every", "3", "--steps", "6")
    worker(setup, straight, *flags, nproc=2)
    res = worker(setup, killed, *flags, nproc=2, worker_flags=("--kill-at-step", "5"), check=False)
    assert res.returncode != 0
    assert latest_checkpoint(killed / "checkpoints").name == "checkpoint-3"
    res = worker(setup, killed, *flags, nproc=2)
    assert "resuming from" in res.stderr and "checkpoint-3" in res.stderr
    order = lambda d: [(r["step"], r["question_id"]) for r in _rows(d / "rollouts.jsonl")]  # noqa: E731
    assert order(killed) == order(straight)
    assert len({q for s, q in order(straight) if s in (3, 4)}) == 8  # epoch 1 covers every question once
    assert _rows(killed / "rollouts.jsonl") == _rows(straight / "rollouts.jsonl")
    assert _rows(killed / "metrics.jsonl", TIMING_KEYS) == _rows(straight / "metrics.jsonl", TIMING_KEYS)
    for r in (0, 1):
        assert (json.loads((killed / f"counts_rank{r}.json").read_text())
                == json.loads((straight / f"counts_rank{r}.json").read_text()))
    state = checkpoint_state(latest_checkpoint(killed / "checkpoints"))
    assert state["step"] == 6 and len(state["counts_digest_by_rank"]) == 2
    assert len(set(state["counts_digest_by_rank"])) == 1


@pytest.mark.slow
def test_sigterm_on_one_rank_stops_both_at_the_same_step(setup, tmp_path):
    """SIGTERM reaching one rank only (a node's processes signalled first): both ranks agree to
    checkpoint step 3 and exit 143, no final/; the rerun ends where the straight run ends, on a
    checkpoint of its last step (a collective that no rank may skip)."""
    straight, termed = tmp_path / "straight", tmp_path / "termed"
    flags = ("--checkpoint-every", "2", "--steps", "4")
    worker(setup, straight, *flags, nproc=2)
    res = worker(setup, termed, *flags, nproc=2, worker_flags=("--term-at-step", "3", "--term-rank", "1"),
                 check=False)
    assert res.returncode != 0 and "exitcode  : 143" in res.stderr, res.stderr[-3000:]
    assert "checkpoint saved at step 3" in res.stderr
    assert [p.name for p in ckpt.list_checkpoints(termed / "checkpoints", trl_trainer.TRL_LAYOUT)] == [
        "checkpoint-2", "checkpoint-3"]
    assert ckpt.verify(termed / "checkpoints" / "checkpoint-3", layout=trl_trainer.TRL_LAYOUT) is None
    assert not (termed / "final").exists()
    worker(setup, termed, *flags, nproc=2)
    assert _rows(termed / "rollouts.jsonl") == _rows(straight / "rollouts.jsonl")
    assert _rows(termed / "metrics.jsonl", TIMING_KEYS) == _rows(straight / "metrics.jsonl", TIMING_KEYS)
    assert checkpoint_state(latest_checkpoint(termed / "checkpoints"))["step"] == 4


@pytest.mark.slow
def test_a_corrupt_newest_checkpoint_is_set_aside_and_the_previous_one_resumes(setup, tmp_path):
    """A truncated model.safetensors in the newest checkpoint (a preempted job on a shared file
    system): the rerun with more steps moves it to checkpoints/corrupt/ (naming the file) and
    resumes from the one before, ending as a straight run of the longer length."""
    straight, run = tmp_path / "straight", tmp_path / "run"
    worker(setup, straight, "--checkpoint-every", "2", "--steps", "6")
    worker(setup, run, "--checkpoint-every", "2", "--steps", "4")
    weights = run / "checkpoints" / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    res = worker(setup, run, "--checkpoint-every", "2", "--steps", "6")
    assert "checkpoint-4 skipped" in res.stderr and "model.safetensors" in res.stderr
    assert "resuming from" in res.stderr and "checkpoint-2 (step 2)" in res.stderr
    aside = list((run / "checkpoints" / "corrupt").glob("checkpoint-4.*.why.txt"))
    assert len(aside) == 1 and "truncated" in aside[0].read_text()
    assert _rows(run / "rollouts.jsonl") == _rows(straight / "rollouts.jsonl")
    assert _rows(run / "metrics.jsonl", TIMING_KEYS) == _rows(straight / "metrics.jsonl", TIMING_KEYS)


def test_colocated_vllm_rollouts_follow_the_run_seed():
    """TRL seeds its colocated vLLM engine (and with it this process's RNGs) with rank // tp, the
    same for every run seed; the backend re-seeds from the run's seed, alike within a
    tensor-parallel group."""
    from types import SimpleNamespace

    from obe.core.seeds import derive_seed

    seed_of = {}
    for seed, rank, tp in [(0, 0, 1), (1, 0, 1), (0, 1, 1), (0, 0, 2), (0, 1, 2)]:
        fake = SimpleNamespace(args=SimpleNamespace(seed=seed, vllm_tensor_parallel_size=tp),
                               accelerator=SimpleNamespace(process_index=rank))
        trl_trainer.trainer_class()._seed_colocated_rollouts(fake)
        seed_of[seed, rank, tp] = torch.initial_seed()
    assert seed_of[0, 0, 1] == derive_seed(0, "vllm rollouts", 0)
    assert seed_of[0, 0, 1] != seed_of[1, 0, 1]  # another run seed, other rollouts
    assert seed_of[0, 0, 1] != seed_of[0, 1, 1]  # another rank (tp 1), another stream
    assert seed_of[0, 0, 2] == seed_of[0, 1, 2]  # one tensor-parallel group, one stream


def test_vllm_settings_reach_grpoconfig_and_server_mode_is_refused(setup, tmp_path):
    """The importance-sampling correction is a setting of ours passed to TRL (on or off, never
    TRL's silent default); vLLM server mode, which nothing here starts, is refused with the reason."""
    cfg = make_cfg(setup, tmp_path / "o")
    for on in (True, False):
        args = trl_trainer.grpo_args(cfg, {**EXTRA, "vllm": "colocate", "vllm_importance_sampling_correction": on}, 1)
        assert args.use_vllm and args.vllm_mode == "colocate" and args.vllm_importance_sampling_correction is on
    with pytest.raises(SystemExit, match="server mode needs a `trl vllm-serve` process"):
        trl_trainer.grpo_args(cfg, {**EXTRA, "vllm": "server"}, 1)
    cfg2, extra, _ = trl_backend.parse(["--model", "m", "--train-data", "t", "--out", str(tmp_path / "o2"),
                                        "--vllm", "colocate", "--no-vllm-importance-sampling-correction", "--n", "4"])
    assert extra["vllm_importance_sampling_correction"] is False and cfg2.n == 4


def test_the_launcher_exits_with_the_trainers_status():
    """obe.engines.launch: a signal that stops the agent, a rank's failure and a single process's
    failure give the trainer's status (143 after an agreed stop), not accelerate's 1."""
    import signal as signals
    import subprocess as sp

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from obe.engines.launch import exit_status

    assert exit_status(SignalException("stop", signals.SIGTERM)) == 143
    failure = ProcessFailure(local_rank=1, pid=1, exitcode=143, error_file="")
    assert exit_status(ChildFailedError("trainer", {1: failure})) == 143
    assert exit_status(sp.CalledProcessError(-15, ["python"])) == 143
    assert exit_status(sp.CalledProcessError(2, ["python"])) == 2
    assert exit_status(ValueError("a bug")) is None
