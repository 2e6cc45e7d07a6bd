"""Throughput of the ``hf`` sampling backend (both engines) vs a bare ``model.generate`` loop.

    .venv/bin/python bench/sampling.py [--threads 2] [--repeats 5] [--model DIR]

Two models, random weights, char-level tokenizer: (a) a ~1M-parameter Llama (stand-in for
the embedded base model; ``--model DIR`` uses a real checkpoint instead) and (b) a
~20M-parameter Llama. For each, both paths sample the same prompts with the same batches,
lengths, seeds and thread count (the bare loop seeds each batch exactly as the backend does,
so both generate identical tokens - checked and printed). Timings alternate between the two
paths; medians over ``--repeats`` runs after one warm-up. Prints tokens/s (completion tokens,
padding excluded) and ratio = backend / bare (>= 1.0 means no overhead). The backend runs
with ``engine="hf"`` (``model.generate``; identical tokens to the bare loop) and with
``engine="lean"`` (obe.engines.fastlm, the CLI's CPU default: same distribution, other samples, so its
tokens/s counts its own completion tokens). Never asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny_model helper

from obe.engines.models import ModelConfig, load  # noqa: E402
from obe.core.seeds import derive_seed  # noqa: E402
from obe.engines.generation import HFBackend, SamplingConfig, generate_texts  # noqa: E402

PROMPTS = [f"Compute {a} + {b} and explain.\n" if a % 2 else f"What is {a}*{b}?\n" for a, b in
           [(3, 4), (12, 7), (5, 99), (31, 2), (8, 8), (123, 45), (6, 1), (77, 13),
            (2, 2), (40, 41), (9, 300), (15, 15), (1, 0), (64, 36), (11, 12), (250, 3)]]


def bare_loop(model, tok, prompts, cfg: SamplingConfig):
    """The reference: tokenizer + model.generate per batch, counting tokens up to EOS."""
    eos = tok.eos_token_id
    tokens, outs = 0, []
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[start : start + cfg.batch_size]
        enc = tok(chunk, padding=True, return_tensors="pt")
        torch.manual_seed(derive_seed(cfg.seed, str(start), 0))  # the backend's batch seed
        with torch.no_grad():
            out = model.generate(
                **enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
                max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=eos,
            )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            n = row.index(eos) + 1 if eos in row else len(row)
            tokens += n
            outs.append(tok.decode(row[: n - 1] if eos in row else row, skip_special_tokens=True))
    return tokens, outs


def ours(backend, tok, prompts, cfg: SamplingConfig):
    res = generate_texts(backend, tok, prompts, 1, cfg)
    return sum(c[0].num_tokens for c in res), [c[0].text for c in res]


def bench_one(label, model_dir, args):
    model, tok = load(ModelConfig(model_dir))
    params = sum(p.numel() for p in model.parameters())
    cfg = SamplingConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=0)
    prompts = PROMPTS[: args.prompts]
    backend, lean = HFBackend(model, tok, engine="hf"), HFBackend(model, tok, engine="lean")
    # warm-up (and equality check)
    t_ours, o_ours = ours(backend, tok, prompts, cfg)
    t_bare, o_bare = bare_loop(model, tok, prompts, cfg)
    t_lean, _ = ours(lean, tok, prompts, cfg)
    same = o_ours == o_bare and t_ours == t_bare
    times = {"ours": [], "bare": [], "lean": []}
    runs = {"ours": lambda: ours(backend, tok, prompts, cfg), "lean": lambda: ours(lean, tok, prompts, cfg),
            "bare": lambda: bare_loop(model, tok, prompts, cfg)}
    for r in range(args.repeats):
        order = ("ours", "bare", "lean") if r % 2 == 0 else ("lean", "bare", "ours")
        for name in order:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps_ours, tps_bare, tps_lean = t_ours / med["ours"], t_bare / med["bare"], t_lean / med["lean"]
    print(
        f"{label}: {params / 1e6:.2f}M params, {len(prompts)} prompts, batch {cfg.batch_size}, "
        f"max_new_tokens {cfg.max_new_tokens}, threads {torch.get_num_threads()}, repeats {args.repeats}\n"
        f"  completion tokens per run: {t_ours} (identical outputs: {same})\n"
        f"  hf backend : {tps_ours:10.1f} tok/s  (median {med['ours'] * 1e3:.1f} ms; "
        f"min {min(times['ours']) * 1e3:.1f} ms)\n"
        f"  bare loop  : {tps_bare:10.1f} tok/s  (median {med['bare'] * 1e3:.1f} ms; "
        f"min {min(times['bare']) * 1e3:.1f} ms)\n"
        f"  lean engine: {tps_lean:10.1f} tok/s  (median {med['lean'] * 1e3:.1f} ms; {t_lean} tokens per run)\n"
        f"  ratio backend/bare: {tps_ours / tps_bare:.3f}; lean/bare: {tps_lean / tps_bare:.3f}",
        flush=True,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint dir for case (a) instead of the ~1M random Llama")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--skip-20m", action="store_true", help="only case (a)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        small = args.model or build_tiny_model(
            Path(tmp) / "small", hidden_size=128, num_layers=4, num_heads=4, intermediate_size=344
        )
        bench_one("(a) " + ("--model " + args.model if args.model else "~1M Llama"), small, args)
        if not args.skip_20m:
            big = build_tiny_model(Path(tmp) / "big", hidden_size=512, num_layers=6, num_heads=8,
                                   intermediate_size=1376)
            bench_one("(b) ~20M Llama", big, args)


if __name__ == "__main__":
    main()
