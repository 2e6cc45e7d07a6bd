"""The generated part of docs/scale.md: markdown tables of :mod:`obe.scale.plan`'s memory plans, and
the command line (:func:`main`, run by ``python -m obe.scale``).

``--markdown`` replaces the block between :data:`BEGIN` and :data:`END` in docs/scale.md with
:func:`render_tables`; without it, the settings, training and sampling tables of the presets it
is given are printed. Numbers only come from ``obe.scale``; this module formats them (GB = 10^9
bytes).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from typing import Optional, Sequence

from obe.scale.plan import (ARCHS, GB, HEADROOM, PRESETS, REPO_ROOT, Plan, embedded_arch, load_plan, param_count,
                       sampling_memory, training_memory)

DOC_PATH = REPO_ROOT / "docs" / "scale.md"


def _gb(x: float) -> str:
    """GB with two decimals (one from 10 GB); below 10 MB in MB, so the CPU default shows."""
    if 0 < x < 0.01 * GB:
        return f"{x / 1e6:.2f} MB"
    return f"{x / GB:.2f}" if x < 10 * GB else f"{x / GB:.1f}"


def _hardware(plan: Plan) -> str:
    if not plan.gpu:
        return "CPU (host memory)"
    shard = {"none": "", "zero3": ", ZeRO-3", "fsdp": ", FSDP"}[plan.sharding]
    return f"{plan.gpus} x {plan.gpu}{shard}"


def arch_table() -> str:
    rows = ["| model | hidden | layers | heads | kv heads | head dim | MLP | vocab | tied | context | "
            "parameters (formula) | published | source |", "|" + "---|" * 13]
    archs = dict(ARCHS, **{"embedded (default)": embedded_arch("default")})
    for name, a in archs.items():
        src = f"[config.json]({a.source})" if a.source.startswith("http") else f"`{a.source}`"
        rows.append(f"| {name} | {a.hidden} | {a.layers} | {a.heads} | {a.kv_heads} | {a.head_dim} | {a.intermediate} | "
                    f"{a.vocab} | {'yes' if a.tied else 'no'} | {a.max_positions} | {param_count(a):,} | "
                    f"{a.published or '-'} | {src} |")
    return "\n".join(rows)


def settings_table(plans: Sequence[Plan]) -> str:
    rows = ["| preset | model | GPUs of a training job | dtype / master weights | T (prompt + completion) | "
            "sequences per GPU per step | micro_batch | rollouts | gradient checkpointing |", "|" + "---|" * 9]
    for p in plans:
        roll = (f"vLLM colocate, {p.colocate:.0%} of each GPU" if p.colocate
                else f"HF generate, rollout_batch {p.rollout_batch}")
        rows.append(f"| {p.name} | {p.model} | {_hardware(p)} | {p.dtype} / {p.master_weights} | "
                    f"{p.seq_len - p.completion_tokens} + {p.completion_tokens} | {p.sequences_per_gpu} | "
                    f"{p.micro_batch} | {roll} | {'yes' if p.gradient_checkpointing else 'no'} |")
    return "\n".join(rows)


def _capacity(plan: Plan, capacity: float) -> str:
    return f"{_gb(capacity)} ({plan.gpu_memory_gb:g} nominal)"


def training_table(plans: Sequence[Plan]) -> str:
    rows = ["| preset | weights | gradients | optimizer | unsharded grads (accumulation) | activations / micro-batch | "
            "LM head / micro-batch | other (update) | KV cache (rollouts) | rollout peak | optimizer step | trainer peak | "
            f"vLLM share | total | GPU (torch total) | free | fits, {HEADROOM:.0%} free |", "|" + "---|" * 17]
    for p in plans:
        b = training_memory(p)
        if b.vllm_sequences is not None:
            kv = f"{_gb(b.kv_cache)} in vLLM ({b.vllm_sequences} x {p.seq_len} tokens)"
            roll = _gb(b.rollout) + " (beside vLLM)" if b.rollout else "in vLLM share"
        else:
            kv, roll = _gb(b.kv_cache), _gb(b.rollout)
        fits = _verdict(b)
        w = _gb(b.weights) + (f" + {_gb(b.reference)} reference" if b.reference else "")
        rows.append(f"| {p.name} | {w} | {_gb(b.gradients)} | {_gb(b.optimizer)} | "
                    f"{_gb(b.accumulation) if p.sharding == 'fsdp' else '-'} | {_gb(b.activations)} | "
                    f"{_gb(b.logits)} | {_gb(b.update_other)} | {kv} | {roll} | {_gb(b.step)} | {_gb(b.trainer_peak)} | "
                    f"{_gb(b.vllm_share) if b.vllm_share else '-'} | {_gb(b.total)} | "
                    f"{_capacity(p, b.capacity) if b.capacity else '-'} | "
                    f"{f'{b.headroom:.0%}' if b.headroom is not None else '-'} | {fits} |")
    return "\n".join(rows)


def _verdict(b) -> str:
    return "n/a (CPU)" if b.fits is None else ("**yes**" if b.keeps_headroom else ("fits, too tight" if b.fits else "**NO**"))


VARIANTS = (  # (name, what changes in the plan, whether it applies)
    ("as planned", {}, lambda p: True),
    ("without sharded accumulation (accelerate's no_sync)", {"sharded_accumulation": False}, lambda p: p.sharding == "fsdp"),
    ("with a reference model (train.beta > 0)", {"reference": True}, lambda p: True),
    ("micro_batch x 2", None, lambda p: True),
)


def variants_table(plans: Sequence[Plan]) -> str:
    """Each GPU preset as planned and with one thing changed: what the plan's margin covers."""
    rows = [f"| preset | variant | trainer peak | total | free | fits, {HEADROOM:.0%} free |", "|" + "---|" * 6]
    for p in plans:
        if not p.gpu:
            continue
        for name, change, applies in VARIANTS:
            if not applies(p):
                continue
            q = replace(p, **(change if change is not None else {"micro_batch": 2 * p.micro_batch}))
            b = training_memory(q)
            rows.append(f"| {p.name} | {name} | {_gb(b.trainer_peak)} | {_gb(b.total)} | {b.headroom:.0%} | {_verdict(b)} |")
    return "\n".join(rows)


def sampling_table(plans: Sequence[Plan]) -> str:
    rows = ["| preset | GPUs of a sampling job | vLLM share | weights | forward + sampler + graphs | KV cache | "
            "full-length sequences in the KV cache | fits |", "|" + "---|" * 8]
    for p in plans:
        v = sampling_memory(p)
        if v is None:
            rows.append(f"| {p.name} | {_hardware(p)} | - | - | - | - | - | n/a ({p.sampling_backend} backend) |")
            continue
        rows.append(f"| {p.name} | {p.tensor_parallel} x {p.gpu} | {_gb(v['share'])} ({p.sampling_utilization:.0%} of the torch total) | "
                    f"{_gb(v['weights'])} | {_gb(v['working'])} | {_gb(v['kv_cache'])} | {v['sequences']} x {p.seq_len} | "
                    f"{'**yes**' if v['fits'] else '**NO**'} |")
    return "\n".join(rows)


BEGIN, END = "<!-- BEGIN generated by python -m obe.scale --markdown -->", "<!-- END generated -->"


def render_tables(plans: Optional[Sequence[Plan]] = None) -> str:
    """The generated part of docs/scale.md."""
    plans = plans or [load_plan(p) for p in PRESETS] + [load_plan(None)]
    return "\n\n".join([
        BEGIN,
        "### Architectures\n\n" + arch_table(),
        "### Settings\n\n" + settings_table(plans),
        "### Training job: memory per GPU (GB = 10^9 bytes)\n\n" + training_table(plans),
        "### The training plans with one thing changed\n\n" + variants_table(plans),
        "### Sampling and evaluation job (vLLM): memory per GPU\n\n" + sampling_table(plans),
        END,
    ])


def update_doc(text: str, tables: str) -> str:
    """``text`` with the part between the BEGIN and END markers replaced by ``tables``."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"docs/scale.md has no {BEGIN!r} ... {END!r} block")
    return pattern.sub(lambda _: tables, text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m obe.scale``: print the tables of presets (exit 1 when one does not fit), or
    rewrite docs/scale.md's generated block."""
    from obe.scale import plan

    ap = argparse.ArgumentParser(prog="python -m obe.scale", description=plan.__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", default=[],
                    help="a preset merged over config.yaml (repeatable); none: the embedded default")
    ap.add_argument("--markdown", action="store_true", help=f"rewrite the generated tables in {DOC_PATH.relative_to(REPO_ROOT)}")
    args = ap.parse_args(argv)
    if args.markdown:
        DOC_PATH.write_text(update_doc(DOC_PATH.read_text(encoding="utf-8"), render_tables()), encoding="utf-8")
        print(f"wrote {DOC_PATH}")
        return 0
    plans = [load_plan(c) for c in args.config] or [load_plan(None)]
    print(settings_table(plans), training_table(plans), sampling_table(plans), sep="\n\n")
    return 0 if all(training_memory(p).fits is not False for p in plans) else 1
