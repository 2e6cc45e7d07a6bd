"""The paper's exploration methods on TRL's ``GRPOTrainer`` (accelerate: DDP or FSDP, one or
many nodes; rollouts from HF ``generate`` or a colocated vLLM).

    accelerate launch --config_file configs/accelerate/one_gpu.yaml -m obe.engines.trl_backend \\
        --model DIR --train-data train.jsonl --out RUN --method ucb_con --steps 200 [--vllm colocate]

Same flags as ``python -m obe.train`` (:class:`obe.training.config.TrainConfig`, so one definition of
every training setting), plus the TRL-only flags of :data:`EXTRA` (vLLM, LoRA), which a resume
compares like the others. Same run folder as ``obe.train``: everything but the model files is
written by :class:`obe.training.run.TrainingRun` (``config.json``, ``metrics.jsonl`` with the keys of
:data:`obe.training.metrics.METRICS` (null where TRL does not expose the number), ``rollouts.jsonl``,
W&B, the checkpoints' state); snapshots and ``final/`` are HF folders. Resumable checkpoints
are the HF Trainer's (``RUN/checkpoints/checkpoint-N/``, sharded state under FSDP) with the
run's ``obe_state.json`` and a manifest written last (:data:`obe.engines.trl_trainer.TRL_LAYOUT`):
re-running the same command resumes from the newest one that verifies.

How the methods enter TRL (one override, :meth:`obe.engines.trl_trainer.ExplorationGRPOTrainer._generate_and_score_completions`):
TRL generates and scores the local completions (the reward function is ``obe.grading.grade``
of the completion's text against the gold answer, and it keeps each completion's outcome key);
then the samples of the GLOBAL batch are gathered to every rank (``gather_object``, in TRL's
own rank-major order, whose consecutive ``num_generations`` rows are one question's group),
every rank updates its identical count table N(x, a) with the whole batch and calls
:func:`obe.rl.bonuses.apply_exploration` (the function ``obe.train`` calls) for its own rows. The
resulting per-token advantages ``[rows, T]`` replace TRL's per-sequence ones; TRL's loss accepts
that shape. Everything else (loss, clipping, KL, optimizer, sharding, vLLM weight sync) is TRL's.

Departures from ``obe.train`` (numbered):
 1. Data order: TRL's ``RepeatSampler``, its shuffle seeded per epoch by ``derive_seed(seed, "epoch",
    e)`` (:class:`obe.engines.trl_trainer.EpochSeededSampler`, so a resume keeps it, with any number of
    processes), not ``obe.training.numerics.batch_indices``; a last incomplete batch of an epoch is dropped.
 2. Rollouts: TRL's generation (HF ``generate`` or vLLM), random stream of the HF Trainer
    (its RNG state is checkpointed; with a colocated vLLM seeded from the run's seed, not TRL's
    per-rank constant); not bitwise equal to ``obe.train``'s rollouts.
 3. One obe step = one TRL generation batch = ``mu`` optimizer steps (TRL's ``num_iterations``),
    so HF's step counters (checkpoint names, its ``max_steps``, ``warmup_steps``) are ``mu`` x obe's;
    ``micro_batch`` (0 = all) must divide ``batch_questions * n / ranks``. The loss and gradient
    norm of a row are means over its ``mu`` updates, ``entropy`` that of the first.
 4. The schedule is HF's, per optimizer step: warm-up ``i / (mu * warmup_steps)`` instead of
    ``(i + 1) / warmup_steps`` per batch; cosine decays to 0 at the last of the ``steps * mu`` updates.
 5. ``entropy/correct`` and ``entropy/incorrect`` are not computed (null); ``clip_ratio*`` and
    ``entropy`` are TRL's (means over the micro-batches of the step).
 6. With vLLM, TRL corrects for the difference between vLLM's sampling distribution and the
    trainer's (importance sampling, TRL's default ``sequence_mask`` mode: a sequence whose ratio
    leaves [C_min, 3] is masked out of the loss, at the cost of one more forward pass):
    ``--vllm-importance-sampling-correction`` (on by default, as in TRL; in config.json and
    the job log). ``obe.train`` samples with the training weights and needs none.
 7. With ``beta > 0`` TRL loads the reference model with the policy's loading dtype (fp32 for
    fp32 master weights); docs/scale.md counts it so.
 8. vLLM runs colocated only: a vLLM server (TRL's ``vllm-serve``) needs GPUs of its own, which the
    train rule does not start; ``--vllm server`` is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Optional, Sequence

import torch

from obe.engines.models import local_model
from obe.engines.trl_trainer import (TRL_LAYOUT, check_trl_version, grpo_args, peft_config, train_dataset,
                                     trainer_class)
from obe.grading import ExtractConfig
from obe.training.config import TrainConfig, resolve_config
from obe.training.metrics import print_metric_keys
from obe.training.run import Distributed, GradingFailed, LossStats, StepRecord, TrainingRun
from obe.training.run_dir import done_record as run_done_record

# TRL-only settings (flag -> (type, default, help)); everything else (dtype, master_weights,
# gradient_checkpointing, micro_batch, ...) is TrainConfig's (obe.training.config), defined there once.
EXTRA: dict[str, tuple[Any, Any, str]] = {
    "vllm": (str, "off", "rollouts from vLLM: off (HF generate) or colocate (a vLLM engine on the training GPUs)"),
    "vllm_gpu_memory_utilization": (float, 0.3, "colocate: GPU memory fraction vLLM may take (the trainer shares the GPU)"),
    "vllm_max_model_len": (int, 0, "vLLM context length (0 = the model's)"),
    "vllm_tensor_parallel_size": (int, 1, "colocate: tensor-parallel size of each vLLM engine"),
    "vllm_importance_sampling_correction": (bool, True, "with vLLM: TRL's importance-sampling correction of the "
                                                        "vLLM/trainer mismatch (sequence_mask mode)"),
    "lora_r": (int, 0, "LoRA rank through TRL's peft_config (0 = full fine-tuning)"),
    "lora_alpha": (int, 32, "LoRA alpha"),
    "lora_dropout": (float, 0.05, "LoRA dropout"),
    "lora_target_modules": (str, "all-linear", "LoRA target modules (comma-separated or all-linear)"),
}


class _AlreadyTrained(Exception):
    """Raised before a step beyond ``steps`` (a run resumed from its last checkpoint)."""


def accelerate_distributed() -> Distributed:
    """The run's :class:`obe.training.run.Distributed` from accelerate's process state (set up
    by ``GRPOConfig``); one process needs no collectives."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    state = PartialState()
    if state.num_processes == 1:
        return Distributed()

    def any_rank(flag: bool) -> bool:
        t = torch.tensor([int(flag)], device=state.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(obj: Any) -> Any:
        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    return Distributed(rank=state.process_index, world_size=state.num_processes, any_rank=any_rank,
                       gather=lambda obj: gather_object([obj]), broadcast=broadcast, barrier=state.wait_for_everyone)


def run(cfg: TrainConfig, extra: dict[str, Any], *, rollout_func=None, on_end=None) -> dict[str, Any]:
    """Train with ``cfg`` (an :class:`obe.training.config.TrainConfig`) on TRL. Seams:
    ``rollout_func`` replaces TRL's generation (``GRPOTrainer``'s own argument), ``on_end(trainer)``
    runs on every rank after training."""
    import transformers
    from transformers import AutoTokenizer, TrainerCallback

    # -- setup ---------------------------------------------------------------------
    check_trl_version()
    torch.set_num_threads(cfg.threads)
    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    cfg = dataclasses.replace(cfg, model=local_model(cfg.model, cfg.revision or None))  # a hub model's pinned snapshot
    args = grpo_args(cfg, extra, int(os.environ.get("WORLD_SIZE", "1")))  # sets up the processes
    dist = accelerate_distributed()
    with TrainingRun(cfg, engine="trl", layout=TRL_LAYOUT, dist=dist, engine_config=dict(extra),
                     device=args.device) as training:
        if extra["vllm"] != "off":
            training.say(f"vLLM {extra['vllm']}: importance-sampling correction "
                         f"{'on' if extra['vllm_importance_sampling_correction'] else 'off'}")
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        B = cfg.batch_questions
        mu = cfg.mu
        stop = {"requested": False}

        class RecordSteps(TrainerCallback):
            """One obe step per ``mu`` optimizer steps: its record, snapshot, checkpoint and stop."""

            def __init__(self):
                self.updates: list[dict[str, Any]] = []

            def on_step_begin(self, args, state, control, **kw):
                if state.global_step >= cfg.steps * mu:  # resumed from the last step's checkpoint (killed before final/)
                    raise _AlreadyTrained  # HF would train one step more when that step is mid-epoch

            def on_log(self, args, state, control, logs=None, **kw):
                if "loss" not in (logs or {}) or trainer.last_batch is None:
                    return
                self.updates.append(dict(logs))
                if state.global_step % mu:
                    return  # inside a batch's mu updates
                step = state.global_step // mu
                training.record(step_record(step, trainer.last_batch, self.updates))
                self.updates = []
                decision = training.end_of_step(step, trainer.model)
                if decision.snapshot:
                    trainer.save_model_folder(training.snapshot_dir(step))
                control.should_save = decision.checkpoint  # HF saves right after on_log (collective under FSDP)
                if decision.stop:
                    stop["requested"] = control.should_training_stop = True

        def step_record(step: int, batch, updates: list[dict[str, Any]]) -> StepRecord:
            mean_of = lambda key: sum(u[key] for u in updates) / len(updates) if key in updates[0] else None  # noqa: E731
            now = time.perf_counter()
            return StepRecord(
                step=step, epoch=step * B / len(training.records), lr=batch.lr, question_ids=batch.question_ids,
                texts=[s.text for s in batch.samples], graded=[s.graded for s in batch.samples],
                rewards_Bn=batch.rewards_Bn, exploration=batch.exploration,
                num_tokens=[s.num_tokens for s in batch.samples], truncated=[s.truncated for s in batch.samples],
                loss=LossStats(loss=mean_of("loss"), grad_norm=mean_of("grad_norm"),
                               kl=mean_of("kl") if cfg.beta > 0 else None, clip_ratio=mean_of("clip_ratio/region_mean"),
                               clip_ratio_low=mean_of("clip_ratio/low_mean"), clip_ratio_high=mean_of("clip_ratio/high_mean"),
                               entropy=updates[0].get("entropy")),
                started=batch.started, time_generate=batch.time_generate, time_grade=batch.time_grade,
                time_update=now - batch.generated)

        # -- rollout -> reward -> advantage (ExplorationGRPOTrainer) -> loss -> step (TRL) -> record, save (RecordSteps)
        trainer = trainer_class()(
            model=cfg.model, args=args, processing_class=tokenizer, train_dataset=train_dataset(training.records, cfg, tokenizer),
            exploration=cfg.exploration(), advantage=cfg.advantage(), extract=ExtractConfig(cfg.reward_extract),
            run=training, callbacks=[RecordSteps()], peft_config=peft_config(extra), rollout_func=rollout_func)
        resume = str(training.resume_from) if training.resume_from is not None else None
        try:
            trainer.train(resume_from_checkpoint=resume)
        except _AlreadyTrained:  # the checkpoint's weights are loaded: only final/ is missing
            pass
        if stop["requested"]:
            training.stopped()
        trainer.save_model_folder(training.final_dir)
        if on_end is not None:
            on_end(trainer)
        return training.summary()


def done_record(out) -> dict[str, Any]:
    """done.json of a finished trl-backend run (the fields of ``obe.train --write-done``)."""
    return run_done_record(out, TRL_LAYOUT)


def parse(argv: Optional[Sequence[str]] = None):
    """``(cfg, extra, args)``: obe.train's flags (its parser) plus the TRL-only ones."""
    own = {f.name for f in dataclasses.fields(TrainConfig)}
    ap = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # `--n` is not `--no-vllm-...`
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
    try:
        summary = run(cfg, extra)
    except GradingFailed as exc:
        print(f"obe.engines.trl_backend: error: {exc}", file=sys.stderr, flush=True)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
