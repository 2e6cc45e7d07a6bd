"""Seconds per GRPO step: obe's trainer vs TRL's ``GRPOTrainer`` (and a bare loop), on CPU.

    .venv/bin/python bench/grpo_step.py [--threads 2] [--steps 8] [--warmup 2] [--rounds 2]
                                         [--sides obe,obe:hf,trl,trl_backend,bare] [--method grpo]
                                         [--skip-explore]

Same settings on every side: a random ~0.8M-parameter Qwen2-style model with the char
tokenizer of ``tests/tiny_model.py`` (fp32), 4 synthetic arithmetic prompts x 8 samples,
up to 32 new tokens (temperature 1, top-p 1, no top-k), reward = ``obe.grading.grade``
against the gold answer, token_mean / "dapo" loss, beta = 0, one AdamW step per batch,
grad clip 1.0, no gradient checkpointing.

* obe: the real ``obe.train.train`` loop (``--method``, default grpo), timings read back from its
  ``metrics.jsonl`` (``time/generate``, ``time/grade``, ``time/update``, ``time/step``).
  ``obe`` uses the trainer's default engine (``auto``: obe.engines.fastlm's lean forward on CPU);
  ``obe:hf`` forces ``--engine hf`` (``model.generate`` and the HF forward), which shows
  what the lean engine buys.
* trl: ``GRPOTrainer`` (no vLLM); generation = ``_generate``, reward = ``_calculate_rewards``
  (both wrapped with timers), step = ``on_step_begin`` .. ``on_step_end``; update = the rest.
* trl_backend: ``obe.engines.trl_backend.run`` (TRL's ``GRPOTrainer`` with obe's methods and outputs,
  one process, HF ``generate``), timings read back from its ``metrics.jsonl`` like obe's
  (step = ``on_step_begin`` .. its log row). ``--method`` picks the method of obe and trl_backend.
* bare: ``model.generate`` + one forward/backward + AdamW step (no reward: 0).

Each side runs in its own subprocess (so its peak RSS, ``ru_maxrss``, is its own), the
sides alternate for ``--rounds`` rounds, and the medians are over all measured steps
(``--warmup`` steps per process dropped). Then (unless
``--skip-explore``) the cost of each exploration method's advantage block (bonus, count
update, answer-token mask) against grpo, and the size of the count table after 10,000
simulated steps of 16 questions x 8 samples. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny_model helper

PROMPT_TEMPLATE = "{problem}\n"
LR = 1e-5


# -- shared setup ---------------------------------------------------------------------


def build_model(directory: Path, seed: int = 0) -> int:
    """A random Qwen2-style causal LM (~0.8M parameters) + the char tokenizer; returns #params."""
    import torch
    from tiny_model import build_tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = build_tokenizer()
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    cfg_path = directory / "tokenizer_config.json"
    tc = json.loads(cfg_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(tc, indent=2))
    return sum(p.numel() for p in model.parameters())


def write_data(path: Path, n: int = 64) -> None:
    from obe.core.records import write_jsonl
    from obe.tasks.synthetic import make_split

    write_jsonl(str(path), make_split("train", n, seed=0))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- the three sides (each in a child process) ---------------------------------------------


def child_obe(a, work: Path) -> list[dict]:
    from obe.train import train
    from obe.training.config import TrainConfig

    out = work / f"obe_run_{os.getpid()}"
    cfg = TrainConfig(model=str(work / "model"), train_data=str(work / "train.jsonl"), out=str(out), method=a.method,
                      steps=a.warmup + a.steps, batch_questions=a.prompts, n=a.n, max_new_tokens=a.max_new_tokens,
                      lr=LR, threads=a.threads, checkpoint_every=10_000, keep_checkpoints=1, agg="token_mean",
                      eps_high=0.2, prompt_template=PROMPT_TEMPLATE, engine=a.obe_engine)
    train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"generation": r["time/generate"], "reward": r["time/grade"], "update": r["time/update"],
             "step": r["time/step"], "tokens": r["num_tokens"]} for r in rows[a.warmup:]]


def child_trl_backend(a, work: Path) -> list[dict]:
    """obe.engines.trl_backend (TRL's GRPOTrainer + obe's methods) with obe's settings, as the train
    rule runs it with train.backend: trl (one process, no accelerate launcher)."""
    from obe.engines import trl_backend
    from obe.training.config import TrainConfig

    out = work / f"trlb_run_{os.getpid()}"
    cfg = TrainConfig(model=str(work / "model"), train_data=str(work / "train.jsonl"), out=str(out), method=a.method,
                      steps=a.warmup + a.steps, batch_questions=a.prompts, n=a.n, max_new_tokens=a.max_new_tokens,
                      lr=LR, threads=a.threads, checkpoint_every=10_000, keep_checkpoints=1, agg="token_mean",
                      eps_high=0.2, prompt_template=PROMPT_TEMPLATE)
    extra = {name: default for name, (_, default, _) in trl_backend.EXTRA.items()}
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # HF's per-step log dicts
        trl_backend.run(cfg, extra)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"generation": r["time/generate"], "reward": r["time/grade"], "update": r["time/update"],
             "step": r["time/step"], "tokens": r["num_tokens"]} for r in rows[a.warmup:]]


def child_trl(a, work: Path) -> list[dict]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from obe.grading import grade
    from obe.core.records import read_jsonl

    torch.set_num_threads(a.threads)
    recs = read_jsonl(str(work / "train.jsonl"))
    gold = {PROMPT_TEMPLATE.format(problem=r.problem): r.answer for r in recs}
    ds = Dataset.from_dict({"prompt": list(gold)})
    times: list[dict] = []
    cur: dict = {}

    def reward(prompts, completions, **kw):
        return [float(grade(c, gold[p]).correct) for p, c in zip(prompts, completions)]

    class Timed(GRPOTrainer):
        def _generate(self, prompts):
            t = time.perf_counter()
            try:
                return super()._generate(prompts)
            finally:
                cur["generation"] = cur.get("generation", 0.0) + time.perf_counter() - t

        def _calculate_rewards(self, *args, **kw):
            t = time.perf_counter()
            try:
                return super()._calculate_rewards(*args, **kw)
            finally:
                cur["reward"] = cur.get("reward", 0.0) + time.perf_counter() - t

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            cur.clear()
            cur["t0"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            step = time.perf_counter() - cur.pop("t0")
            gen, rew = cur.get("generation", 0.0), cur.get("reward", 0.0)
            times.append({"generation": gen, "reward": rew, "update": step - gen - rew, "step": step})

    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(work / f"trl_run_{os.getpid()}"), use_cpu=True, bf16=False, fp16=False, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, max_steps=a.warmup + a.steps, seed=0,
        per_device_train_batch_size=a.prompts * a.n, num_generations=a.n, max_completion_length=a.max_new_tokens,
        gradient_accumulation_steps=1, steps_per_generation=1, gradient_checkpointing=False,
        learning_rate=LR, lr_scheduler_type="constant", optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
        loss_type="dapo", scale_rewards="group", beta=0.0, temperature=1.0, top_p=1.0, top_k=0,
        log_completions=False, dataloader_num_workers=0,
    )
    trainer = Timed(model=model, reward_funcs=reward, args=args, processing_class=tok, train_dataset=ds,
                    callbacks=[Clock()])
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # per-step log dicts
        trainer.train()
    return times[a.warmup:]


def child_bare(a, work: Path) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from obe.core.records import read_jsonl

    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    recs = read_jsonl(str(work / "train.jsonl"))
    gen_cfg = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=a.max_new_tokens,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    tok.padding_side = "left"
    out = []
    for i in range(a.warmup + a.steps):
        batch = [PROMPT_TEMPLATE.format(problem=recs[(i * a.prompts + j) % len(recs)].problem)
                 for j in range(a.prompts) for _ in range(a.n)]
        enc = tok(batch, return_tensors="pt", padding=True)
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            seq = model.generate(**enc, generation_config=gen_cfg)
        t1 = time.perf_counter()
        model.train()
        attn = torch.cat([enc["attention_mask"], torch.ones_like(seq[:, enc["input_ids"].shape[1]:])], 1)
        T = seq.shape[1] - enc["input_ids"].shape[1]
        logits = model(input_ids=seq, attention_mask=attn, logits_to_keep=T + 1).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, seq[:, -T:, None]).squeeze(-1)
        (-logp.mean()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        out.append({"generation": t1 - t0, "reward": 0.0, "update": t2 - t1, "step": t2 - t0})
    return out[a.warmup:]


def run_child(a, side: str, work: Path) -> dict:
    kind, _, engine = side.partition(":")  # "obe:hf" = obe with --obe-engine hf
    cmd = [sys.executable, __file__, "--child", kind, "--work", str(work), "--threads", str(a.threads),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--prompts", str(a.prompts), "--n", str(a.n),
           "--max-new-tokens", str(a.max_new_tokens), "--obe-engine", engine or a.obe_engine, "--method", a.method]
    res = subprocess.run(cmd, capture_output=True, text=True)
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        sys.stderr.write(res.stdout[-3000:] + res.stderr[-5000:])
        raise SystemExit(f"{side} child failed (exit {res.returncode})")
    return json.loads(line[len("RESULT "):])


# -- exploration overhead and count-table size ------------------------------------------


def explore_overhead(a, step_s: float) -> None:
    import torch
    from transformers import AutoTokenizer

    from obe.rl.advantages import AdvantageConfig, binary_rewards
    from obe.rl.bonuses import BONUSES, ExplorationConfig, apply_exploration
    from obe.rl.counts import OutcomeCounts
    from obe.engines.rollout import answer_token_mask, completion_mask

    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(Path(a.work_dir) / "model")
    rng = random.Random(0)
    B, n, T = a.prompts, a.n, a.max_new_tokens
    qids = [f"q{i}" for i in range(B)]

    def batch():
        texts, keys = [], []
        for b in range(B):
            row = []
            for _ in range(n):
                ans = str(rng.choice([7, 7, 7, 8, 12, 5, rng.randint(0, 99)]))
                text = ("so " + "x" * rng.randint(0, 12) + f"\\boxed{{{ans}}}")[:T]
                texts.append(text)
                row.append(ans)
            keys.append(row)
        ids = [tok(t, add_special_tokens=False)["input_ids"][:T - 1] + [tok.eos_token_id] for t in texts]
        texts = tok.batch_decode(ids, skip_special_tokens=True)  # as obe.engines.rollout decodes them
        c = torch.full((B * n, T), tok.pad_token_id, dtype=torch.long)
        for i, x in enumerate(ids):
            c[i, :len(x)] = torch.tensor(x)
        cm = completion_mask(c, [tok.eos_token_id])
        rewards = binary_rewards([[k == "7" for k in row] for row in keys])
        return texts, keys, c, cm, rewards

    batches = [batch() for _ in range(64)]
    print(f"\n## Exploration overhead (advantage block of one step: bonus + count update + answer mask; "
          f"{B}x{n}, count table pre-filled with 1,000 steps; median of {len(batches)} x 5)")
    print(f"{'method':<10} {'ms/step':>9} {'over grpo ms':>13} {'% of obe step':>14}")
    base = None
    for method in ["grpo"] + sorted(m for m in BONUSES if m != "grpo"):
        cfg = ExplorationConfig(method=method)
        adv_cfg = AdvantageConfig()
        counts = OutcomeCounts()
        for _ in range(1000):
            counts.update(f"q{rng.randrange(B)}", [str(rng.randint(0, 30)) for _ in range(n)])
        samples = []
        for _rep in range(5):
            for texts, keys, c, cm, rewards in batches:
                t = time.perf_counter()
                apply_exploration(rewards, keys, qids, counts, cfg, adv_cfg, cm,
                                  lambda: answer_token_mask(tok, c, cm, texts))
                samples.append(time.perf_counter() - t)
        med = statistics.median(samples)
        base = med if base is None else base
        print(f"{method:<10} {med * 1e3:9.3f} {(med - base) * 1e3:13.3f} {100 * (med - base) / step_s:13.2f}%")


def count_table_memory() -> None:
    from obe.rl.counts import OutcomeCounts

    steps, B, n, Q = 10_000, 16, 8, 7_500
    print(f"\n## Count table after {steps:,} simulated steps of {B} questions x {n} samples "
          f"({steps * B * n:,} samples; {Q:,} training questions in epochs)")
    for name, draw in (
        ("typical (Zipf over 64 answers)", lambda r: str(min(int(r.paretovariate(1.2)), 64))),
        ("worst case (every answer new)", None),
    ):
        r = random.Random(1)
        counts = OutcomeCounts()
        order = list(range(Q))
        pos, uid = 0, 0
        t = time.perf_counter()
        for _ in range(steps):
            qs = []
            for _b in range(B):
                if pos % Q == 0:
                    r.shuffle(order)
                qs.append(f"q{order[pos % Q]}")
                pos += 1
            if draw is None:
                keys = [[str(uid + b * n + i) for i in range(n)] for b in range(B)]
                uid += B * n
            else:
                keys = [[draw(r) for _ in range(n)] for _ in range(B)]
            counts.observe_batch(qs, keys)
        dt = time.perf_counter() - t
        print(f"{name:<32} entries={counts.num_entries():>9,}  approx_bytes={counts.approx_bytes() / 2**20:8.1f} MiB  "
              f"update={dt / steps * 1e6:6.1f} us/step")


# -- main -------------------------------------------------------------------------------


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="measured steps per process")
    ap.add_argument("--warmup", type=int, default=2, help="dropped steps per process")
    ap.add_argument("--rounds", type=int, default=2, help="obe / trl / bare processes alternate this many times")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--obe-engine", choices=["auto", "lean", "hf"], default="auto",
                    help="obe.train --engine of the obe side (auto = lean on CPU)")
    ap.add_argument("--sides", default="obe,obe:hf,trl,trl_backend,bare",
                    help="comma-separated: obe, trl, trl_backend (obe.engines.trl_backend), bare, or obe:ENGINE (e.g. obe,obe:hf,trl)")
    ap.add_argument("--method", default="grpo", help="exploration method of the obe and trl_backend sides")
    ap.add_argument("--skip-explore", action="store_true")
    ap.add_argument("--child", choices=["obe", "trl", "trl_backend", "bare"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child:
        import torch

        torch.set_num_threads(a.threads)
        fn = {"obe": child_obe, "trl": child_trl, "trl_backend": child_trl_backend, "bare": child_bare}[a.child]
        rows = fn(a, Path(a.work))
        print("RESULT " + json.dumps({"rows": rows, "rss_mib": rss_mib()}))
        return

    with tempfile.TemporaryDirectory(prefix="grpo_bench_") as tmp:
        work = Path(tmp)
        a.work_dir = str(work)
        n_params = build_model(work / "model")
        write_data(work / "train.jsonl")
        sides = [s for s in a.sides.split(",") if s]
        print(f"# GRPO step time, CPU, {a.threads} threads (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}); "
              f"Qwen2-style {n_params / 1e6:.2f}M params fp32; {a.prompts} prompts x {a.n} samples, "
              f"<= {a.max_new_tokens} new tokens")
        print(f"# {a.rounds} rounds x {a.steps} measured steps per side (+{a.warmup} warm-up per process); "
              f"load before: {os.getloadavg()[0]:.2f}")
        res: dict[str, dict] = {s: {"rows": [], "rss": [], "per_proc": []} for s in sides}
        for _ in range(a.rounds):
            for s in sides:
                r = run_child(a, s, work)
                res[s]["rows"] += r["rows"]
                res[s]["rss"].append(r["rss_mib"])
                res[s]["per_proc"].append(med(r["rows"], "step"))
        print(f"\n{'side':<12} {'step s':>8} {'gen s':>8} {'reward s':>9} {'update s':>9} {'peak RSS MiB':>13}"
              f"  step s per process (noise)")
        for s in sides:
            rows = res[s]["rows"]
            print(f"{s:<12} {med(rows, 'step'):8.3f} {med(rows, 'generation'):8.3f} {med(rows, 'reward'):9.4f} "
                  f"{med(rows, 'update'):9.3f} {max(res[s]['rss']):13.0f}  "
                  + " ".join(f"{x:.3f}" for x in res[s]["per_proc"]))
        print()
        for s in (x for x in sides if x.startswith("obe") and "trl_backend" in res):
            o, t = res[s]["rows"], res["trl_backend"]["rows"]
            print(f"ratio {s}/trl_backend: step {med(o, 'step') / med(t, 'step'):.2f}x, generation "
                  f"{med(o, 'generation') / med(t, 'generation'):.2f}x, update {med(o, 'update') / med(t, 'update'):.2f}x")
        if "trl_backend" in res and "trl" in res:
            o, t = res["trl_backend"]["rows"], res["trl"]["rows"]
            print(f"ratio trl_backend/TRL: step {med(o, 'step') / med(t, 'step'):.2f}x (the cost of obe's outputs and methods on TRL)")
        for s in (x for x in sides if x.startswith("obe") and "trl" in res):
            o, t = res[s]["rows"], res["trl"]["rows"]
            print(f"ratio {s}/TRL: step {med(o, 'step') / med(t, 'step'):.2f}x, generation "
                  f"{med(o, 'generation') / med(t, 'generation'):.2f}x, update {med(o, 'update') / med(t, 'update'):.2f}x "
                  f"(goal: step <= 0.5x)")
        print(f"load after: {os.getloadavg()[0]:.2f}")
        if not a.skip_explore:
            step_s = med(res["obe"]["rows"], "step") if "obe" in res else 1.0
            explore_overhead(a, step_s)
            count_table_memory()


if __name__ == "__main__":
    main()
