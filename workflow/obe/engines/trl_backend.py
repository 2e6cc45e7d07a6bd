"""The paper's exploration methods on TRL's ``GRPOTrainer`` (accelerate: DDP, DeepSpeed ZeRO-3 or
FSDP, one or many nodes; rollouts from HF ``generate`` or vLLM, colocate or server mode).

    accelerate launch --config_file configs/accelerate/one_gpu.yaml -m obe.engines.trl_backend \\
        --model DIR --train-data train.jsonl --out RUN --method ucb_con --steps 200 [--vllm colocate]

Same flags as ``python -m obe.train`` (:class:`obe.training.config.TrainConfig`, so one definition of
every training setting), plus the TRL-only flags of :data:`EXTRA` (vLLM, LoRA).
Same outputs as ``obe.train`` in ``RUN/``: ``config.json``, ``metrics.jsonl`` (the keys of
:data:`obe.training.metrics.METRICS`; null where TRL does not expose the number, see :data:`NOT_AVAILABLE`),
``rollouts.jsonl``, ``snapshots/step_N/``, ``final/`` and, through ``--write-done``, done.json.
Resumable checkpoints are the HF Trainer's (``RUN/checkpoints/checkpoint-N/``: sharded
optimizer state under ZeRO-3 / FSDP), each with ``obe_state.json`` (count table, solved set,
JSONL byte lengths): re-running the same command resumes from the newest complete one.

How the methods enter TRL (one override, :meth:`obe.engines.trl_trainer.ObeGRPOTrainer._generate_and_score_completions`):
TRL generates and scores the local completions (the reward function is ``obe.grading.grade``
against the gold answer, and it keeps each completion's outcome key); then the (question id,
outcome key, correct) of the GLOBAL batch are gathered to every rank (``gather_object``, in
TRL's own rank-major order, whose consecutive ``num_generations`` rows are one question's
group), every rank updates its identical count table N(x, a) with the whole batch and calls
:func:`obe.rl.bonuses.apply_exploration` (the function ``obe.train`` calls) for its own rows. The
resulting per-token advantages ``[rows, T]`` replace TRL's per-sequence ones; TRL's loss accepts
that shape. Everything else (loss, clipping, KL, optimizer, sharding, vLLM weight sync) is TRL's.

Departures from ``obe.train`` (numbered):
 1. Data order: TRL's ``RepeatSampler``, its shuffle seeded per epoch by ``derive_seed(seed, "epoch",
    e)`` (so a resume keeps it), not ``obe.training.numerics.batch_indices``; a last incomplete batch of an
    epoch is dropped.
 2. Rollouts: TRL's generation (HF ``generate`` or vLLM), random stream of the HF Trainer
    (its RNG state is checkpointed); not bitwise equal to ``obe.train``'s rollouts.
 3. One obe step = one TRL generation batch = ``mu`` optimizer steps (TRL's ``num_iterations``),
    so HF's step counters (checkpoint names, its ``max_steps``, ``warmup_steps``) are ``mu`` x obe's;
    ``micro_batch`` (0 = all) must divide ``batch_questions * n / ranks``. The loss and gradient
    norm of a row are means over its ``mu`` updates, ``entropy`` that of the first.
 4. The schedule is HF's, per optimizer step: warm-up ``i / (mu * warmup_steps)`` instead of
    ``(i + 1) / warmup_steps`` per batch; cosine decays to 0 at the last of the ``steps * mu`` updates.
 5. ``entropy/correct`` and ``entropy/incorrect`` are not computed (null); ``clip_ratio*`` and
    ``entropy`` are TRL's (means over the micro-batches of the step).
 6. SIGTERM/SIGINT stop after the current step with a checkpoint (exit 143) when every rank gets
    the signal (Slurm and torchrun deliver it to all); ``--vllm server`` needs a ``trl vllm-serve``
    started beside the job (the train rule starts none; the presets use colocate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from obe.core import checkpoint as ckpt
from obe.engines.trl_trainer import (check_trl_version, grpo_args, latest_checkpoint, peft_config, read_state,
                                     save_model_dir, train_dataset, trainer_class)
from obe.grading import ExtractConfig
from obe.rl.counts import OutcomeCounts
from obe.training.config import TrainConfig, resolve_config
from obe.training.metrics import (COMPLETION_COLUMNS, METRICS, cumulative_metrics, distinct_answers_per_question, group_metrics,
                                  print_metric_keys)
from obe.training.numerics import peak_memory_gb
from obe.training.run_dir import (RUN_OUTPUTS, config_mismatch, data_digest, finished_record, model_identity,
                                  read_run_config)

NOT_AVAILABLE = ("entropy/correct", "entropy/incorrect")
# TRL-only settings (flag -> (type, default, help)); everything else (dtype, master_weights,
# gradient_checkpointing, micro_batch, ...) is TrainConfig's (obe.training.config), defined there once.
EXTRA: dict[str, tuple[Any, Any, str]] = {
    "vllm": (str, "off", "rollouts from vLLM: off (HF generate), colocate (same GPUs), server (trl vllm-serve)"),
    "vllm_gpu_memory_utilization": (float, 0.3, "colocate: GPU memory fraction vLLM may take (the trainer shares the GPU)"),
    "vllm_max_model_len": (int, 0, "vLLM context length (0 = the model's)"),
    "vllm_tensor_parallel_size": (int, 1, "colocate: tensor-parallel size of each vLLM engine"),
    "lora_r": (int, 0, "LoRA rank through TRL's peft_config (0 = full fine-tuning)"),
    "lora_alpha": (int, 32, "LoRA alpha"),
    "lora_dropout": (float, 0.05, "LoRA dropout"),
    "lora_target_modules": (str, "all-linear", "LoRA target modules (comma-separated or all-linear)"),
}


class _AlreadyTrained(Exception):
    """Raised before a step beyond ``steps`` (a run resumed from its last checkpoint)."""


def run(cfg: TrainConfig, extra: dict[str, Any], *, rollout_func=None, on_end=None) -> dict[str, Any]:
    """Train with ``cfg`` (an :class:`obe.training.config.TrainConfig`) on TRL. Tests: ``rollout_func``
    replaces TRL's generation (``GRPOTrainer``'s own hook), ``on_end(trainer)`` runs on every
    rank after training."""
    import transformers
    from transformers import AutoTokenizer, TrainerCallback

    from obe.core.progress import Progress
    from obe.core.records import read_jsonl
    from obe.core.tracking import NullTracker, relog_rows, resumable_run_id, run_name, start_run
    from obe.tasks.synthetic import rollout_metrics as task_rollout_metrics

    # -- setup ---------------------------------------------------------------------
    check_trl_version()
    torch.set_num_threads(cfg.threads)
    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    out = Path(cfg.out)
    args = grpo_args(cfg, extra, int(os.environ.get("WORLD_SIZE", "1")))
    is_main = args.process_index == 0  # the process that writes the run folder's files
    ck_root = out / "checkpoints"
    records = read_jsonl(cfg.train_data)
    if not records:
        raise SystemExit(f"{cfg.train_data}: no training questions")
    digest = data_digest(records)
    model_id = model_identity(cfg.model)  # what the model is, not where it lives: a moved project resumes
    problem_of = {str(r.id): r.problem for r in records}
    full_config = dict(cfg.to_dict(), backend="trl", trl=dict(extra))
    last = resume_checkpoint(cfg, extra, out, digest, model_id, is_main=is_main)
    state = read_state(last) if last is not None else None
    counts = OutcomeCounts.from_dict(state["counts"]) if state else OutcomeCounts()
    metrics_path, rollouts_path = out / "metrics.jsonl", out / "rollouts.jsonl"
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.clean_partial(out)
        ckpt.clean_partial(out / "snapshots")
        ckpt.truncate_file(metrics_path, state["metrics_bytes"] if state else 0)
        ckpt.truncate_file(rollouts_path, state["rollouts_bytes"] if state else 0)
        (out / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")
        if state:
            print(f"obe.engines.trl_backend: resuming from {last} (step {state['step']})", file=sys.stderr, flush=True)

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tracker = NullTracker()
    metrics_f = rollouts_f = progress = None
    if is_main:
        metrics_f, rollouts_f = open(metrics_path, "a"), open(rollouts_path, "a")
        tracker = start_run(stage="train", name=run_name(cfg.method, cfg.seed), config=full_config,
                            experiment=cfg.experiment, wandb_dir=cfg.wandb_dir, tags=[cfg.method, "trl"],
                            run_id=resumable_run_id(out, resume=state is not None))
        if state:
            relog_rows(tracker, metrics_path)
        progress = Progress(f"train {run_name(cfg.method, cfg.seed)} (trl)", cfg.steps, start=state["step"] if state else 0)
    distinct_q = distinct_answers_per_question(counts, dict.fromkeys(q for q, _, _ in counts))  # question -> distinct answers
    pending: dict[str, Any] = {}  # the current batch, from the trainer (on_rollouts) and HF's logs (on_log)
    stop: dict[str, Any] = {"signal": None}

    def on_signal(signum, frame):  # checked between steps (every rank gets it from Slurm / torchrun)
        stop["signal"] = signum
    old_handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    class Outputs(TrainerCallback):
        """obe's per-step row, rollouts, snapshots (main process writes)."""

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step >= cfg.steps * cfg.mu:  # resumed from the last step's checkpoint (killed before final/)
                raise _AlreadyTrained  # HF would train one step more when that step is mid-epoch
            if state.global_step % cfg.mu == 0:  # the first of the batch's mu updates
                pending["t_begin"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            if "loss" not in (logs or {}) or "rows" not in pending:
                return
            pending.setdefault("logs", []).append(dict(logs))
            if state.global_step % cfg.mu == 0:  # the batch's last update: one obe row
                if is_main:
                    write_step(state.global_step // cfg.mu, pending["logs"])
                pending.pop("rows")
                pending.pop("logs")

        def on_step_end(self, args, state, control, **kw):
            if state.global_step % cfg.mu:
                return  # inside a batch's mu updates
            if state.global_step // cfg.mu in cfg.save_steps:
                save_model_dir(trainer, out / "snapshots" / f"step_{state.global_step // cfg.mu}")
            if stop["signal"] is not None:  # SIGTERM/SIGINT: checkpoint this step, then stop
                control.should_save = control.should_training_stop = True

    def write_step(step: int, updates: list[dict[str, Any]]) -> None:
        # -- log: loss, grad norm, KL, clipping are means over the batch's mu updates; entropy the first's (as obe.train)
        mean_of = lambda key: (sum(u[key] for u in updates) / len(updates)) if key in updates[0] else None  # noqa: E731
        logs = {k: mean_of(k) for k in ("loss", "grad_norm", "kl", "clip_ratio/region_mean", "clip_ratio/low_mean",
                                         "clip_ratio/high_mean")}
        rows, qids, keys_Bn, rewards_Bn, res = (pending[k] for k in ("rows", "qids", "keys_Bn", "rewards_Bn", "result"))
        B, group_size = rewards_Bn.shape
        distinct_q.update(distinct_answers_per_question(trainer.counts, set(qids)))
        n_tok = torch.tensor([r[3] for r in rows], dtype=torch.float64)
        row = {
            "step": step, "epoch": step * B / len(records), "loss": logs.get("loss"),
            "kl": logs.get("kl") if cfg.beta > 0 else None, "entropy": updates[0].get("entropy"),
            "entropy/correct": None, "entropy/incorrect": None,
            "clip_ratio": logs.get("clip_ratio/region_mean"), "clip_ratio/low": logs.get("clip_ratio/low_mean"),
            "clip_ratio/high": logs.get("clip_ratio/high_mean"), "grad_norm": logs.get("grad_norm"), "lr": pending["lr"],
            **group_metrics(rewards_Bn, keys_Bn, res.bonus_Bn, res.sample_Bn, cfg.std),
            **cumulative_metrics(trainer.counts, trainer.solved, distinct_q),
            "completions/mean_length": float(n_tok.mean()), "completions/max_length": int(n_tok.max()),
            "completions/min_length": int(n_tok.min()), "completions/clipped_ratio": sum(r[4] for r in rows) / len(rows),
            "num_tokens": int(n_tok.sum()),
        }
        now = time.perf_counter()
        t_step = now - pending.get("t_begin", now)
        row.update({"perf/tokens_per_sec": row["num_tokens"] / t_step if t_step > 0 else None,
                    "perf/peak_memory_gb": peak_memory_gb(trainer.accelerator.device),
                    "time/generate": pending["time_generate"], "time/grade": pending["time_grade"],
                    "time/update": now - pending["t_end"], "time/step": t_step})
        # the task's own rollout metrics, as obe.train logs them (the synthetic task's convention)
        row.update(task_rollout_metrics([problem_of[r[0]] for r in rows], [r[5] for r in rows]))
        if not set(METRICS) <= set(row):
            raise RuntimeError(f"metrics row lacks {sorted(set(METRICS) - set(row))}: METRICS changed")
        metrics_f.write(json.dumps(row) + "\n")
        metrics_f.flush()
        for s, r in enumerate(rows):
            rollouts_f.write(json.dumps({"question_id": r[0], "step": step, "sample_index": s % group_size,
                                         "outcome_key": r[1], "correct": r[2], "num_tokens": r[3]}) + "\n")
        rollouts_f.flush()
        tracker.log({k: v for k, v in row.items() if v is not None}, step=step)
        if cfg.log_completions_every and (step == 1 or step % cfg.log_completions_every == 0):
            bonus_S = res.bonus_Bn.reshape(-1).tolist()
            tracker.log_table("completions", COMPLETION_COLUMNS, [
                [step, r[0], problem_of[r[0]], r[5], r[6], r[2], bonus_S[s], trainer.counts.count(r[0], r[1])]
                for s, r in enumerate(rows)], step=step)
        progress.update(step, reward=row["reward"], distinct=row["answers/distinct_per_group"],
                        tokens_per_s=round(row["perf/tokens_per_sec"] or 0))

    def file_lengths() -> dict[str, Any]:  # what each checkpoint's obe_state.json adds (-- save)
        for f in (metrics_f, rollouts_f):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
        return {"metrics_bytes": metrics_path.stat().st_size if metrics_path.exists() else 0,
                "rollouts_bytes": rollouts_path.stat().st_size if rollouts_path.exists() else 0,
                "config": full_config, "data_digest": digest, "model_identity": model_id}

    # -- rollout -> reward -> advantage (ObeGRPOTrainer) -> loss -> step (TRL), log (write_step), save (HF)
    trainer = trainer_class()(
        model=cfg.model, args=args, processing_class=tokenizer, train_dataset=train_dataset(records, cfg, tokenizer),
        exploration=cfg.exploration(), advantage=cfg.advantage(), counts=counts,
        solved=state["solved"] if state else [], on_rollouts=pending.update, extract=ExtractConfig(cfg.reward_extract),
        callbacks=[Outputs()], peft_config=peft_config(extra), rollout_func=rollout_func)
    trainer.obe_state_extra = file_lengths
    try:
        try:
            trainer.train(resume_from_checkpoint=str(last) if last else None)
        except _AlreadyTrained:  # the checkpoint's weights are loaded: only final/ is missing
            pass
        newest = latest_checkpoint(ck_root)
        if newest is None or read_state(newest)["step"] != trainer.obe_step:  # the last step's checkpoint
            trainer._save_checkpoint(trainer.model, None)
        if stop["signal"] is not None and trainer.obe_step < cfg.steps:
            if is_main:
                print(f"obe.engines.trl_backend: signal {stop['signal']} received; checkpoint saved at step "
                      f"{trainer.obe_step}, exiting", file=sys.stderr, flush=True)
            raise SystemExit(143)
        save_model_dir(trainer, out / "final")
        if on_end is not None:
            on_end(trainer)
        summary = {"steps": trainer.obe_step, "questions_solved": len(trainer.solved), "final_dir": str(out / "final")}
        tracker.summary(summary)
        return summary
    finally:
        if progress is not None:
            progress.close()
        tracker.finish()
        for f in (metrics_f, rollouts_f):
            if f is not None:
                f.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


def resume_checkpoint(cfg: TrainConfig, extra: dict[str, Any], out: Path, digest: str, model_id: str, *,
                      is_main: bool) -> Optional[Path]:
    """The newest complete checkpoint under ``out/checkpoints`` to go on from, or None to start
    (over). One made with other settings (obe's options, the TRL-only ones, the initial model or
    the questions) is refused, or with ``--on-config-change restart`` the old run (RUN_OUTPUTS) is
    set aside by the main process, never deleted: obe.train's rule for a restart."""
    last = latest_checkpoint(out / "checkpoints")
    if last is None:
        return None
    state = read_state(last)
    state_cfg = dict(state["config"])
    why = config_mismatch(cfg, dict(state, config={k: v for k, v in state_cfg.items() if k not in ("backend", "trl")}),
                          digest, model_id)
    if why is None and state_cfg.get("trl") != dict(extra):
        why = "was made with other TRL settings"
    if not why:
        return last
    if cfg.on_config_change != "restart":
        raise SystemExit(f"{out}: checkpoint {last.name} {why}; use another --out, the same options, "
                         f"or --on-config-change restart")
    if is_main:
        aside = ckpt.supersede(out, f"checkpoint {last.name} {why}", move=[out / d for d in RUN_OUTPUTS])
        print(f"obe.engines.trl_backend: checkpoint {last.name} {why}; the old run is set aside in {aside}; "
              f"starting over", file=sys.stderr, flush=True)
    return None


def done_record(out: str | Path) -> dict[str, Any]:
    """done.json of a finished trl-backend run: the fields of ``obe.train --write-done`` (a test
    compares the two), with the step read from the newest complete TRL checkpoint."""
    out = Path(out).resolve()
    cfg = read_run_config(out)
    last = latest_checkpoint(out / "checkpoints")
    return finished_record(out, cfg, read_state(last)["step"] if last else 0)


def parse(argv: Optional[Sequence[str]] = None):
    """``(cfg, extra, args)``: obe.train's flags (its parser) plus the TRL-only ones."""
    own = {f.name for f in dataclasses.fields(TrainConfig)}
    ap = argparse.ArgumentParser(add_help=False)
    for name, (typ, default, help_) in EXTRA.items():
        if name in own:
            continue  # defined once, by TrainConfig
        flag = "--" + name.replace("_", "-")
        if typ is bool:
            ap.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=help_)
        else:
            ap.add_argument(flag, dest=name, type=typ, default=default, help=help_)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print("python -m obe.engines.trl_backend: obe.train's flags (below) plus the TRL-only flags:\n")
        ap.print_help()
        print()
    known, rest = ap.parse_known_args(argv)
    cfg, args = resolve_config(rest)
    if cfg is None:  # --write-done / --list-metrics
        return None, {}, args
    extra = {name: getattr(cfg, name) if name in own else getattr(known, name) for name in EXTRA}
    return cfg, extra, args


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, extra, args = parse(argv)
    if args.write_done:
        print(json.dumps(done_record(args.write_done), indent=2))
        return 0
    if cfg is None:
        print_metric_keys()
        return 0
    summary = run(cfg, extra)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
