"""Embedded base model stage: a tiny Llama pre-trained on the synthetic task.

``python -m obe.base_model --out DIR --seed 0 --size default --threads 2``

builds, in ``DIR``, a Hugging Face model directory that ``AutoModelForCausalLM`` and
``AutoTokenizer`` load (safetensors weights, ``PreTrainedTokenizerFast`` tokenizer, a
generation config for plain temperature-1 sampling) plus ``base_model_report.json``.

What it does:

1. **Tokenizer** (:func:`build_tokenizer`): character level over the task's alphabet
   (digits, ``+-*=``, space, newline, ``Q:``, braces), with ``\\boxed{`` as one token, built
   with the ``tokenizers`` library. ``<bos>`` is prepended by the tokenizer's post-processor
   whenever ``add_special_tokens`` is true (the default), ``<eos>`` ends a solution,
   ``<pad>`` pads (left padding by default, for generation). Unknown characters map to
   ``<unk>``.
2. **Data**: questions from ``obe.tasks.synthetic.make_split("train", ...)`` (or the problems of
   a Record JSONL given with ``--train-data``); each training example is one fresh worked
   solution by the imperfect student ``obe.tasks.synthetic.DEFAULT_MISTAKES`` (systematically
   wrong facts, shaky facts, random slips), so the model learns a realistic, diverse and
   often wrong answer distribution rather than the correct one.
3. **Pre-training**: next-token loss on the completion only (prompt tokens masked), AdamW,
   warmup + cosine decay, fixed number of steps, ``torch.set_num_threads(--threads)``.
4. **Evaluation** on held-out ``test`` questions: ``--eval-samples`` samples per question at
   temperature 1.0 (no top-k/top-p), answers read with ``obe.grading.latex.last_boxed`` and compared
   as exact strings (synthetic answers are plain integers). Reports pass@1, pass@k,
   distinct answers per question, boxed fraction, train seconds, parameter count, config.

Prompt template (shared with the sampling and RL stages): :data:`PROMPT_TEMPLATE`, i.e. the
problem text followed by one newline, tokenised with special tokens (so it starts with
``<bos>``); the model continues with the worked solution and ``<eos>``.

Deterministic for a given ``--seed`` and ``--threads`` (same weights on re-run). The
evaluation questions are ``make_split("test", --eval-questions, seed=--seed)``; the
pre-training pool is ``make_split("train", 20000, seed=--seed)`` at ``--difficulty``
(default 3); downstream stages should use the same difficulty. Sampling needs at most
:func:`default_max_new_tokens` new tokens (64 at difficulty 3; also the saved generation
config's ``max_new_tokens``).

Sizes (:data:`SIZES`): ``default`` is a 166k-parameter Llama (hidden 64, 4 layers, 4 heads,
MLP 128, tied embeddings, vocab 27) trained 800 steps x 64 sequences (~51k demonstrations,
AdamW lr 3e-3, fp32 -- bf16 autocast measured ~6x slower on this CPU). Calibration on the
task with the convention symbol ``?``, seed 0, 1 thread, 128 test questions x 32
samples: pass@1 0.212, pass@32 0.867, 10.1 distinct answers per question, 100% boxed; it reads
``?`` as ``+`` in 0.695 of its samples (the student: 0.7); 89 s wall / 68 s CPU at load ~1.
The student itself (exact, ``obe.tasks.synthetic.demo_stats``) scores pass@1 0.26, pass@32 0.87.
A pilot of GRPO on it (16 questions x 8 samples, lr 1e-4, 256 train questions, seed 0) drove
that reading to 0.98 by step 50: test pass@1 0.21 -> 0.28, pass@32 0.88 -> 0.73 (sampling
seed 1234; the minority questions, where ``?`` means ``-``, fell from 0.79 to 0.27): the
shared behaviour carries the collapse to unseen questions (docs/default_task.md).
``smoke`` (21k parameters, 40 steps) builds in a few seconds for tests; its quality is
meaningless.

``--size rehearsal --stand-in-for NAME --data FILE...`` (:func:`build_rehearsal`; the overlay
configs/rehearsal.yaml) builds instead a tiny stand-in for the hub model ``NAME`` of a GPU preset:
its family, tokenizer kind, special tokens and chat format (:mod:`obe.engines.tiny_models`),
pre-trained to answer the questions of the Record files in the pipeline's prompt
(``--prompt-template``, ``--use-chat-template``, ``--system-prompt``), saved in ``--dtype``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from obe.core.tracking import add_wandb_args, log_stage_summary
from typing import Sequence

PROMPT_TEMPLATE = "{problem}\n"
BOX_TOKEN = "\\boxed{"
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
ALPHABET = tuple("0123456789") + ("+", "-", "*", "=", " ", "\n", "Q", ":", "{", "}", "\\", "?")
REPORT_NAME = "base_model_report.json"


def format_prompt(problem: str) -> str:
    """The text the model is conditioned on for ``problem``."""
    return PROMPT_TEMPLATE.format(problem=problem)


def default_max_new_tokens(difficulty: int) -> int:
    """Generation budget: a well-formed solution has at most ~9 tokens a step plus the box."""
    return 12 * (int(difficulty) + 1) + 16


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` for the synthetic task (character level + ``\\boxed{``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + (BOX_TOKEN,) + ALPHABET)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Every match is its own piece: "\boxed{" first, otherwise any single character.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer, out: Path) -> None:
    tokenizer.save_pretrained(str(out))
    # Make the class explicit so AutoTokenizer reloads exactly this class.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["padding_side"] = "left"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class SizeConfig:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    steps: int
    batch_size: int
    lr: float
    warmup: int
    train_questions: int
    weight_decay: float = 0.01
    max_positions: int = 256


SIZES = {
    "default": SizeConfig(
        hidden=64, layers=4, heads=4, intermediate=128, steps=800, batch_size=64,
        lr=3e-3, warmup=50, train_questions=20000,
    ),
    "smoke": SizeConfig(
        hidden=32, layers=2, heads=2, intermediate=64, steps=40, batch_size=32,
        lr=3e-3, warmup=5, train_questions=500,
    ),
}


def build_model(size: SizeConfig, tokenizer, max_new_tokens: int = 64):
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=size.max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
    )
    return model


# --------------------------------------------------------------------------- training


def encode_examples(tokenizer, problems: Sequence[str], solutions: Sequence[str]):
    """Right-padded ``input_ids``, ``attention_mask`` and completion-only ``labels``."""
    prompts = tokenizer([format_prompt(p) for p in problems], add_special_tokens=True)["input_ids"]
    comps = tokenizer(list(solutions), add_special_tokens=False)["input_ids"]
    return encode_pairs(prompts, [c + [tokenizer.eos_token_id] for c in comps], tokenizer.pad_token_id)


def encode_pairs(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int):
    """Token ids of (prompt, completion) pairs, right-padded with ``pad_id``, as ``input_ids``,
    ``attention_mask`` and ``labels`` that score the completion tokens only."""
    import torch

    seqs = [list(p) + list(c) for p, c in zip(prompts, completions)]
    labs = [[-100] * len(p) + list(c) for p, c in zip(prompts, completions)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, labs)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, : len(l)] = torch.tensor(l)
    return ids, mask, labels


def pretrain(model, tokenizer, records, size: SizeConfig, seed: int, bf16: bool = False, log_every: int = 100):
    """Supervised pre-training on fresh student demonstrations; returns the loss curve."""
    import torch

    from obe.tasks import synthetic

    torch.manual_seed(seed)
    demos = synthetic.iter_demonstrations(records, seed=seed)

    def next_batch():
        batch = [next(demos) for _ in range(size.batch_size)]
        return encode_examples(tokenizer, [b[0] for b in batch], [b[1] for b in batch])

    return fit(model, next_batch, size, bf16=bf16, log_every=log_every)


def fit(model, next_batch, size: SizeConfig, bf16: bool = False, log_every: int = 100) -> list[float]:
    """``size.steps`` AdamW steps of next-token loss on the labelled tokens of ``next_batch()``
    (``input_ids, attention_mask, labels``), warmup + cosine decay; returns the loss curve."""
    import torch

    opt = torch.optim.AdamW(
        model.parameters(), lr=size.lr, betas=(0.9, 0.98), weight_decay=size.weight_decay
    )

    def lr_at(step: int) -> float:
        if step < size.warmup:
            return (step + 1) / size.warmup
        frac = (step - size.warmup) / max(1, size.steps - size.warmup)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    t0 = time.time()
    for step in range(size.steps):
        ids, mask, labels = next_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            print(f"step {step + 1}/{size.steps} loss {recent:.4f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    return losses


# --------------------------------------------------------------------------- evaluation


def sample_completions(
    model,
    tokenizer,
    problems: Sequence[str],
    n_samples: int,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 512,
    seed: int = 0,
) -> list[list[str]]:
    """``n_samples`` completions per problem through ``obe.sampling`` (the pipeline's sampler)."""
    from obe.engines.generation import SamplingConfig, generate_texts

    cfg = SamplingConfig(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed,
                         batch_size=batch_size)
    prompts = [format_prompt(p) for p in problems]
    completions = generate_texts(model, tokenizer, prompts, n_samples, cfg, keys=list(problems))
    return [[c.text for c in comps] for comps in completions]


def score_completions(completions: Sequence[Sequence[str]], answers: Sequence[str]) -> dict:
    """pass@1, pass@n, distinct answers and boxed fraction, graded by ``obe.grading``."""
    from obe.grading import NO_ANSWER_KEY, SENTINEL_KEYS, grade
    from obe.metrics import distinct_answers, pass_at_k

    n_q = len(completions)
    n = len(completions[0]) if n_q else 0
    p1 = pn = distinct = boxed = mode_correct = 0.0
    for comps, gold in zip(completions, answers):
        results = [grade(c, gold) for c in comps]
        c = sum(r.correct for r in results)
        p1 += pass_at_k(n, c, 1)
        pn += pass_at_k(n, c, n)
        keys = [r.outcome_key for r in results]
        boxed += sum(k != NO_ANSWER_KEY for k in keys) / n
        distinct += distinct_answers(keys, exclude=SENTINEL_KEYS)
        answered = [r for r in results if r.outcome_key not in SENTINEL_KEYS]
        if answered:
            tally: dict[str, int] = {}
            for r in answered:
                tally[r.outcome_key] = tally.get(r.outcome_key, 0) + 1
            top = max(tally, key=tally.get)
            mode_correct += float(any(r.correct for r in answered if r.outcome_key == top))
    return {
        "questions": n_q,
        "samples_per_question": n,
        "pass@1": p1 / n_q,
        f"pass@{n}": pn / n_q,
        "distinct_answers_per_question": distinct / n_q,
        "boxed_fraction": boxed / n_q,
        "mode_is_correct": mode_correct / n_q,
    }


# --------------------------------------------------------------------------- stage


def count_params(model) -> int:
    # tied embeddings are counted once
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def build(
    out: str | Path,
    seed: int = 0,
    size: str | SizeConfig = "default",
    threads: int = 2,
    difficulty: int | None = None,
    train_data: str | None = None,
    eval_questions: int = 128,
    eval_samples: int = 32,
    bf16: bool = False,
    steps: int | None = None,
    log_every: int = 100,
) -> dict:
    """Build, pre-train, save and evaluate the base model; returns the report dict."""
    import torch

    from obe.tasks import synthetic
    from obe.core.records import read_jsonl

    torch.set_num_threads(max(1, int(threads)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size_name = size if isinstance(size, str) else "custom"
    cfg = SIZES[size] if isinstance(size, str) else size
    if steps is not None:
        cfg = replace(cfg, steps=int(steps))
    difficulty = synthetic.DEFAULT_DIFFICULTY if difficulty is None else int(difficulty)

    if train_data:
        records = [r for r in read_jsonl(train_data) if r.source == synthetic.SOURCE]
        if not records:
            raise SystemExit(f"--train-data {train_data}: no records with source 'synthetic'")
    else:
        records = synthetic.make_split("train", cfg.train_questions, seed=seed, difficulty=difficulty)

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    random.seed(seed)
    max_new = default_max_new_tokens(difficulty)
    model = build_model(cfg, tokenizer, max_new_tokens=max_new)
    n_params = count_params(model)
    print(f"base_model: size={size_name} params={n_params} steps={cfg.steps} batch={cfg.batch_size} "
          f"threads={threads} train_questions={len(records)} difficulty={difficulty}", flush=True)

    t0, c0 = time.time(), time.process_time()
    losses = pretrain(model, tokenizer, records, cfg, seed=seed, bf16=bf16, log_every=log_every)
    train_seconds = time.time() - t0
    train_cpu_seconds = time.process_time() - c0

    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(tokenizer, out)

    report: dict = {
        "size": size_name,
        "seed": seed,
        "threads": threads,
        "difficulty": difficulty,
        "params": n_params,
        "train_seconds": round(train_seconds, 2),
        # CPU time of this process (all threads): a load-independent view of the cost
        "train_cpu_seconds": round(train_cpu_seconds, 2),
        "train_questions": len(records),
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "prompt_template": PROMPT_TEMPLATE,
        "config": asdict(cfg),
        "bf16": bf16,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if eval_questions > 0 and eval_samples > 0:
        report["eval"] = evaluate_base(model, tokenizer, eval_questions, eval_samples, seed, difficulty, max_new)
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


def evaluate_base(model, tokenizer, questions: int, samples: int, seed: int, difficulty: int, max_new: int) -> dict:
    """Scores of ``samples`` completions on ``questions`` held-out synthetic test questions, the
    student's exact scores on them for reference, and three examples."""
    from obe.tasks import synthetic

    test = synthetic.make_split("test", questions, seed=seed, difficulty=difficulty)
    t1 = time.time()
    comps = sample_completions(
        model, tokenizer, [r.problem for r in test], samples, max_new_tokens=max_new, seed=seed
    )
    scores = score_completions(comps, [r.answer for r in test])
    scores["seconds"] = round(time.time() - t1, 2)
    scores["student_reference"] = synthetic.demo_stats(test, k=samples)
    scores["examples"] = [
        {"problem": r.problem, "answer": r.answer, "samples": c[:4]} for r, c in zip(test[:3], comps[:3])
    ]
    return scores


# --------------------------------------------------------------------------- rehearsal stand-in

# The rehearsal model (configs/rehearsal.yaml): pre-training hyperparameters and shape, 0.16-0.22M
# parameters with its ~1k-token vocabulary. On the rehearsal's 44 questions (12 MATH train + 4 x 8
# test), 130 steps take ~25 s of CPU and give pass@1 ~0.34 at temperature 1 to the tied-embedding
# Qwen2.5-Math-1.5B stand-in (100 steps: 0.11; 2026-12-07, load 4-9): enough right answers for
# rewards, enough wrong ones for exploration.
REHEARSAL = SizeConfig(hidden=64, layers=2, heads=4, intermediate=192, steps=130, batch_size=16, lr=5e-3,
                       warmup=10, train_questions=0, max_positions=4096)
REHEARSAL_KV_HEADS = 2
# What the stand-in learns to answer (the answer as the presets' prompt asks for it: in a box)
REHEARSAL_ANSWER = "The final answer is $\\boxed{{{answer}}}$."


def rehearsal_target(answer: str) -> str:
    return REHEARSAL_ANSWER.format(answer=answer)


def build_rehearsal(
    out: str | Path,
    *,
    stand_in_for: str,
    data: Sequence[str],
    prompt_template: str,
    use_chat_template: str,
    system_prompt: str | None = None,
    dtype: str = "float32",
    seed: int = 0,
    threads: int = 2,
    steps: int | None = None,
    eval_samples: int = 4,
    log_every: int = 50,
) -> dict:
    """A tiny stand-in for ``stand_in_for`` (:mod:`obe.engines.tiny_models`: its family, a byte-level BPE
    tokenizer trained on the questions of ``data``, its chat format when ``use_chat_template`` is
    ``always``), pre-trained to answer the questions of the Record JSONL files ``data`` with
    ``"The final answer is $\\boxed{answer}$."`` from the prompts the pipeline builds for them
    (:func:`obe.engines.models.build_prompt`, so the same template, chat format and special
    tokens). At temperature 1 it then answers some of them right and many wrong, so rewards, outcome
    keys and pass@k are not trivially zero. It memorises its test questions on purpose: its scores
    measure nothing but the plumbing. Saved in ``dtype`` (as a hub checkpoint is); returns the report."""
    import torch

    from obe.core.records import read_jsonl
    from obe.engines import tiny_models
    from obe.engines.models import ModelConfig, build_prompt, prompt_adds_special_tokens, torch_dtype

    torch.set_num_threads(max(1, int(threads)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = REHEARSAL if steps is None else replace(REHEARSAL, steps=int(steps))
    family = tiny_models.family_of(stand_in_for)
    chat = use_chat_template == "always"
    records = [r for path in data for r in read_jsonl(path)]
    if not records:
        raise SystemExit(f"--data {' '.join(data)}: no questions")
    targets = [rehearsal_target(r.answer) for r in records]
    tokenizer = tiny_models.build_tokenizer(family, [prompt_template, *(r.problem for r in records), *targets], chat=chat)
    pcfg = ModelConfig(name_or_path=stand_in_for, prompt_template=prompt_template, use_chat_template=use_chat_template,
                       system_prompt=system_prompt)
    prompts = [build_prompt(tokenizer, r.problem, pcfg) for r in records]
    prompt_ids = tokenizer(prompts, add_special_tokens=prompt_adds_special_tokens(tokenizer, pcfg))["input_ids"]
    eos = tokenizer.eos_token_id
    completion_ids = [ids + [eos] for ids in tokenizer(targets, add_special_tokens=False)["input_ids"]]
    longest = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
    if longest > cfg.max_positions:
        raise SystemExit(f"a prompt and answer of {longest} tokens exceed the stand-in's {cfg.max_positions} positions")

    torch.manual_seed(seed)
    model = tiny_models.build_model(family, tokenizer, name_or_path=stand_in_for, chat=chat, hidden=cfg.hidden,
                                    layers=cfg.layers, heads=cfg.heads, kv_heads=REHEARSAL_KV_HEADS,
                                    intermediate=cfg.intermediate, max_positions=cfg.max_positions)
    n_params = count_params(model)
    print(f"base_model: rehearsal stand-in for {stand_in_for} ({family}, chat={chat}) params={n_params} "
          f"vocab={len(tokenizer)} questions={len(records)} steps={cfg.steps} threads={threads}", flush=True)
    # Batches of questions of similar length (little padding: the prompts run from tens to
    # hundreds of tokens), visited in a seeded order, one epoch after another.
    by_length = sorted(range(len(records)), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))
    batches = [by_length[i:i + cfg.batch_size] for i in range(0, len(by_length), cfg.batch_size)]
    order = random.Random(seed)
    queue: list[list[int]] = []

    def next_batch():
        if not queue:
            queue.extend(order.sample(batches, len(batches)))
        batch = queue.pop()
        return encode_pairs([prompt_ids[i] for i in batch], [completion_ids[i] for i in batch], eos)

    t0, c0 = time.time(), time.process_time()
    losses = fit(model, next_batch, cfg, log_every=log_every)
    train_seconds, train_cpu_seconds = time.time() - t0, time.process_time() - c0
    max_new = max(len(c) for c in completion_ids) + 8
    model.generation_config.max_new_tokens = max_new
    model.to(torch_dtype(dtype) if dtype != "auto" else torch.float32).save_pretrained(str(out), safe_serialization=True)
    tiny_models.save_tokenizer(tokenizer, out)

    report: dict = {
        "size": "rehearsal", "stand_in_for": stand_in_for, "family": family, "chat_template": chat, "seed": seed,
        "threads": threads, "params": n_params, "vocab": len(tokenizer), "dtype": dtype,
        "tied_embeddings": bool(model.config.tie_word_embeddings), "questions": len(records),
        "train_seconds": round(train_seconds, 2), "train_cpu_seconds": round(train_cpu_seconds, 2),
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])), "prompt_template": prompt_template,
        "config": asdict(cfg), "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if eval_samples > 0:  # the saved model (in its dtype) on every question it learned
        from obe.engines.generation import SamplingConfig, generate_texts

        t1 = time.time()
        comps = generate_texts(model, tokenizer, prompts, eval_samples,
                               SamplingConfig(max_new_tokens=max_new, seed=seed, batch_size=256),
                               add_special_tokens=prompt_adds_special_tokens(tokenizer, pcfg),
                               keys=[str(r.id) for r in records])
        scores = score_completions([[c.text for c in cs] for cs in comps], [r.answer for r in records])
        report["eval"] = dict(scores, seconds=round(time.time() - t1, 2),
                              examples=[{"prompt": p, "answer": r.answer, "samples": [c.text for c in cs[:2]]}
                                        for p, r, cs in zip(prompts[:2], records[:2], comps[:2])])
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m obe.base_model",
        description="Build and pre-train the embedded tiny base model on the synthetic task, or (--size "
                    "rehearsal) a tiny stand-in for a hub model on prepared questions.",
    )
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=[*sorted(SIZES), "rehearsal"], default="default",
                    help="rehearsal: a stand-in for --stand-in-for, pre-trained on --data (configs/rehearsal.yaml)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--difficulty", type=int, default=None, help="synthetic difficulty (default: task default)")
    ap.add_argument("--train-data", default=None,
                    help="Record JSONL whose synthetic problems form the pre-training question pool "
                         "(default: generated from obe.tasks.synthetic with --seed)")
    ap.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    ap.add_argument("--eval-questions", type=int, default=None,
                    help="held-out test questions, 0 = skip eval (default: 128; smoke: 8)")
    ap.add_argument("--eval-samples", type=int, default=None,
                    help="samples per eval question (default: 32; smoke: 4)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for training")
    rehearsal = ap.add_argument_group("--size rehearsal")
    rehearsal.add_argument("--stand-in-for", help="hub name of the model the stand-in rehearses (its family)")
    rehearsal.add_argument("--data", nargs="+", default=[], help="Record JSONL files whose questions it learns")
    rehearsal.add_argument("--prompt-template", default="{problem}\n", help="the pipeline's prompt template")
    rehearsal.add_argument("--use-chat-template", choices=["auto", "always", "never"], default="never",
                           help="always: the stand-in gets its family's chat template and learns from chat prompts")
    rehearsal.add_argument("--system-prompt", default=None)
    rehearsal.add_argument("--dtype", default="float32", help="dtype of the saved weights")
    add_wandb_args(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    # Busy-waiting OpenMP threads make torch 10x+ slower on shared cores; only effective if
    # torch is not imported yet (true for ``python -m obe.base_model``).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size == "rehearsal":
        if not args.stand_in_for or not args.data:
            parser.error("--size rehearsal needs --stand-in-for NAME and --data FILE...")
        report = build_rehearsal(
            args.out, stand_in_for=args.stand_in_for, data=args.data, prompt_template=args.prompt_template,
            use_chat_template=args.use_chat_template, system_prompt=args.system_prompt, dtype=args.dtype,
            seed=args.seed, threads=args.threads, steps=args.steps,
            eval_samples=4 if args.eval_samples is None else args.eval_samples)
        return _summarise(args, report)
    smoke = args.size == "smoke"
    if args.eval_questions is None:
        args.eval_questions = 8 if smoke else 128
    if args.eval_samples is None:
        args.eval_samples = 4 if smoke else 32

    report = build(
        out=args.out, seed=args.seed, size=args.size, threads=args.threads, difficulty=args.difficulty,
        train_data=args.train_data, eval_questions=args.eval_questions, eval_samples=args.eval_samples,
        bf16=args.bf16, steps=args.steps,
    )
    return _summarise(args, report)


def _summarise(args, report: dict) -> int:
    summary = {k: report[k] for k in ("size", "params", "train_seconds", "train_cpu_seconds", "final_loss")}
    if "eval" in report:
        summary.update({k: v for k, v in report["eval"].items() if k not in ("examples", "student_reference")})
    print(json.dumps(summary, indent=2))
    log_stage_summary(args, stage="base_model", name="base_model", config=vars(args), summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
