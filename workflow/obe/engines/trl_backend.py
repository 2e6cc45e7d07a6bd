"""The paper's exploration methods on TRL's ``GRPOTrainer`` (accelerate: DDP, DeepSpeed ZeRO-3 or
FSDP, one or many nodes; rollouts from HF ``generate`` or vLLM, colocate or server mode).

    accelerate launch --config_file configs/accelerate/one_gpu.yaml -m obe.engines.trl_backend \\
        --model DIR --train-data train.jsonl --out RUN --method ucb_con --steps 200 [--vllm colocate]

Same flags as ``python -m obe.train`` (its :class:`obe.train.TrainConfig`, so one definition of
every training setting), plus the TRL-only flags of :data:`EXTRA` (vLLM, LoRA).
Same outputs as ``obe.train`` in ``RUN/``: ``config.json``, ``metrics.jsonl`` (the keys of
:data:`obe.train.METRICS`; null where TRL does not expose the number, see :data:`NOT_AVAILABLE`),
``rollouts.jsonl``, ``snapshots/step_N/``, ``final/`` and, through ``--write-done``, done.json.
Resumable checkpoints are the HF Trainer's (``RUN/checkpoints/checkpoint-N/``: sharded
optimizer state under ZeRO-3 / FSDP), each with ``obe_state.json`` (count table, solved set,
JSONL byte lengths): re-running the same command resumes from the newest complete one.

How the methods enter TRL (one override, :meth:`ObeGRPOTrainer._generate_and_score_completions`):
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
    e)`` (so a resume keeps it), not ``obe.train.batch_indices``; a last incomplete batch of an
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
import hashlib
import inspect
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from obe.core import checkpoint as ckpt
from obe.rl.advantages import binary_rewards
from obe.rl.bonuses import apply_exploration
from obe.rl.counts import OutcomeCounts
from obe.grading import SENTINEL_KEYS, ExtractConfig, grade
from obe.engines.generation import derive_seed

TRL_VERSION = "1.16.0"  # the version whose private methods we override (see PINNED_SOURCES)
# sha256 of ``inspect.getsource`` of every TRL / transformers method this module overrides or
# relies on by name; tests/test_trl_backend.py fails when an upgrade changes one of them. Recorded
# with trl 1.16.0 and the test extra's transformers (5.24.0); the gpu extra's transformers (5.17.0)
# was not installed here, so its Trainer._save_checkpoint has not been checked against this.
PINNED_SOURCES = {
    "trl.GRPOTrainer._generate_and_score_completions": "1fa48922792dcd5c72da155cfe99db477771a7c61cde15519fe8c86d0cdc0b65",
    # read, not overridden: it must keep accepting per-token advantages [B, T]
    "trl.GRPOTrainer._compute_loss": "80295546bbdbf6f711acce7f6e69b0100ab40aa8f23ed8052cc564ff024e3e40",
    "transformers.Trainer._save_checkpoint": "a9111e30faa9933986e022e56b5af81fd990356db64d727b4c320c852283bf3b",
    "trl.GRPOTrainer._get_train_sampler": "36497afb4d311dc9a80d914d27893fe075c5bbc7edde8586edfa60125e980799",
    "trl.RepeatSampler.__iter__": "d80412d80424bd645f7d74cdb8bdc1994c789d8ba03111ffe6eea20f789dea58",
}
STATE_FILE = "obe_state.json"
CHECKPOINT_PREFIX = "checkpoint-"
LOSS_TYPES = {"token_mean": "dapo", "seq_mean_token_mean": "grpo", "dr_grpo": "dr_grpo"}
NOT_AVAILABLE = ("entropy/correct", "entropy/incorrect")
# TRL-only settings (flag -> (type, default, help)); everything else (dtype, master_weights,
# gradient_checkpointing, micro_batch, ...) is obe.train's TrainConfig, defined there once.
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


def pinned_source_hashes() -> dict[str, str]:
    """The current sha256 of each method named in :data:`PINNED_SOURCES`."""
    import transformers
    import trl

    from trl.trainer.utils import RepeatSampler

    objs = {"trl.GRPOTrainer": trl.GRPOTrainer, "transformers.Trainer": transformers.Trainer,
            "trl.RepeatSampler": RepeatSampler}
    out = {}
    for name in PINNED_SOURCES:
        owner, meth = name.rsplit(".", 1)
        out[name] = hashlib.sha256(inspect.getsource(getattr(objs[owner], meth)).encode()).hexdigest()
    return out


def check_trl_version() -> None:
    import trl

    if trl.__version__ != TRL_VERSION:
        raise RuntimeError(f"obe.engines.trl_backend overrides private methods of trl {TRL_VERSION}; installed is "
                           f"trl {trl.__version__}. Install trl=={TRL_VERSION} (pyproject pins it).")


# -- the trainer ------------------------------------------------------------------------------


def _make_trainer_class():
    from accelerate.utils import gather_object
    from trl import GRPOTrainer

    from obe.engines.rollout import answer_token_mask

    class ObeGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` whose advantages are obe's (:func:`obe.rl.bonuses.apply_exploration`).

        Extra arguments: ``exploration`` (:class:`obe.rl.bonuses.ExplorationConfig`),
        ``advantage`` (:class:`obe.rl.advantages.AdvantageConfig`), ``extract`` (the
        :class:`obe.grading.ExtractConfig` of the rewards; None: grade's default), ``counts`` / ``solved``
        (restored state, else empty), ``on_rollouts(info)`` (called on every rank after each
        training batch's advantages with the gathered batch; the CLI logs with it). The
        dataset needs ``prompt``, ``answer`` and ``question_id`` columns.
        """

        def __init__(self, *args, exploration, advantage, counts: Optional[OutcomeCounts] = None,
                     solved: Sequence[str] = (), on_rollouts=None, extract=None, **kwargs):
            check_trl_version()
            self.exploration, self.advantage = exploration, advantage
            self.extract = extract if extract is not None else ExtractConfig()
            self.counts = counts if counts is not None else OutcomeCounts()
            self.solved: set[str] = set(solved)
            self.on_rollouts = on_rollouts
            self._graded: list = []
            self._grade_s = 0.0
            super().__init__(*args, reward_funcs=[self.correct], **kwargs)

        def correct(self, prompts, completions, answer, question_id, **kwargs) -> list[float]:
            """Reward 1/0 by obe.grading.grade; keeps the graded results for the advantages."""
            t = time.perf_counter()
            graded = [grade(c, a, config=self.extract) for c, a in zip(completions, answer)]
            self._graded.extend(zip(question_id, graded, completions))
            self._grade_s += time.perf_counter() - t
            return [float(g.correct) for g in graded]

        def _generate_and_score_completions(self, inputs):
            if not self.model.training:
                return super()._generate_and_score_completions(inputs)
            t0 = time.perf_counter()
            self._graded, self._grade_s = [], 0.0
            lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else None
            out = super()._generate_and_score_completions(inputs)
            t1 = time.perf_counter()
            if len(self._graded) != len(inputs):
                raise RuntimeError(f"graded {len(self._graded)} completions for {len(inputs)} inputs")
            cids, cmask = out["completion_ids"].cpu(), out["completion_mask"].cpu()
            texts = [text for _, _, text in self._graded]
            lengths = cmask.sum(dim=1).tolist()
            eos = torch.tensor(self.eos_token_ids)
            truncated = [not bool(torch.isin(cids[i, :int(L)], eos).any()) for i, L in enumerate(lengths)]
            local = [(str(q), g.outcome_key, bool(g.correct), int(L), tr, text, g.answer)
                     for (q, g, text), L, tr in zip(self._graded, lengths, truncated)]
            rows = gather_object(local)  # the global batch, rank-major like TRL's gathered rewards
            n = self.num_generations
            if len(rows) % n:
                raise RuntimeError(f"global batch of {len(rows)} rows is not a multiple of n={n}")
            B = len(rows) // n
            groups = [rows[b * n:(b + 1) * n] for b in range(B)]
            qids = [g[0][0] for g in groups]
            if any(r[0] != q for q, g in zip(qids, groups) for r in g):
                raise RuntimeError("a group of num_generations rows mixes questions: TRL's sampler layout changed")
            keys_Bn = [[r[1] for r in g] for g in groups]
            rewards_Bn = binary_rewards([[r[2] for r in g] for g in groups])
            rank, L = self.accelerator.process_index, len(inputs)
            res = apply_exploration(
                rewards_Bn, keys_Bn, qids, self.counts, self.exploration, self.advantage, cmask,
                lambda: answer_token_mask(self.processing_class, cids, cmask, texts), rows=slice(rank * L, (rank + 1) * L))
            out["advantages"] = res.token_RT.to(device=out["completion_ids"].device, dtype=torch.float32)
            for q, g in zip(qids, groups):
                if any(r[2] for r in g):
                    self.solved.add(q)
            if self.on_rollouts is not None:
                self.on_rollouts(dict(rows=rows, qids=qids, keys_Bn=keys_Bn, rewards_Bn=rewards_Bn, result=res, lr=lr,
                                      time_generate=t1 - t0 - self._grade_s, time_grade=self._grade_s, t_end=time.perf_counter()))
            return out

        def _get_train_sampler(self, dataset=None):
            # TRL's RepeatSampler draws each epoch's permutation from one generator seeded once, so
            # a run resumed in epoch e would replay epoch 0's order. Seed it per epoch instead (HF
            # calls set_epoch before each epoch, resumed or not), as obe.train's data order does.
            sampler = super()._get_train_sampler(dataset)
            if getattr(sampler, "shuffle", False):
                seed = self.args.seed

                def set_epoch(epoch: int) -> None:
                    sampler.generator = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
                sampler.set_epoch = set_epoch
            return sampler

        def _save_checkpoint(self, model, trial):
            # obe's state goes in first; HF writes trainer_state.json last, so a checkpoint with
            # both files is complete (see latest_checkpoint)
            folder = Path(self._get_output_dir(trial=trial)) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            if self.args.should_save:
                folder.mkdir(parents=True, exist_ok=True)
                state = dict(self.obe_state_extra(), counts=self.counts.to_dict(), solved=sorted(self.solved),
                             step=self.obe_step, global_step=self.state.global_step)
                tmp = folder / (STATE_FILE + ".tmp")
                with open(tmp, "w") as f:
                    json.dump(state, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, folder / STATE_FILE)
            super()._save_checkpoint(model, trial)

        @property
        def obe_step(self) -> int:
            """obe's step (one rollout batch) = HF's optimizer steps / mu (TRL's num_iterations)."""
            return self.state.global_step // self.num_iterations

        def obe_state_extra(self) -> dict[str, Any]:
            """More JSON to store in each checkpoint's obe_state.json (the CLI adds file lengths)."""
            return {}

    return ObeGRPOTrainer


_TRAINER_CLASS = None


class _AlreadyTrained(Exception):
    """Raised before a step beyond ``steps`` (a run resumed from its last checkpoint)."""


def trainer_class():
    """The :class:`ObeGRPOTrainer` class (built on first use: importing trl is slow)."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        _TRAINER_CLASS = _make_trainer_class()
    return _TRAINER_CLASS


# -- checkpoints --------------------------------------------------------------------------------


def latest_checkpoint(root: str | Path) -> Optional[Path]:
    """The newest complete ``checkpoint-N`` (trainer_state.json and obe_state.json) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = [p for p in root.glob(f"{CHECKPOINT_PREFIX}*")
            if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "trainer_state.json").is_file() and (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), default=None)


def read_state(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / STATE_FILE).read_text())


# -- configuration -------------------------------------------------------------------------------


def batch_layout(cfg, world_size: int) -> tuple[int, int]:
    """``(sequences per forward/backward per process, gradient accumulation steps)`` so that one
    optimizer step takes the whole batch of ``batch_questions * n`` sequences over ``world_size``
    processes (TRL then generates once per ``mu`` steps: steps_per_generation = accumulation)."""
    S = cfg.batch_questions * cfg.n
    if S % world_size:
        raise SystemExit(f"batch_questions * n = {S} is not divisible by the {world_size} processes")
    per_rank = S // world_size
    micro = cfg.micro_batch or per_rank
    if per_rank % micro:
        raise SystemExit(f"micro_batch {micro} does not divide the {per_rank} sequences of each process")
    return micro, per_rank // micro


def grpo_args(cfg, extra: dict[str, Any], world_size: int):
    """TRL's ``GRPOConfig`` for obe's ``TrainConfig`` (+ the TRL-only settings ``extra``)."""
    import warnings

    from trl import GRPOConfig

    micro, accumulation = batch_layout(cfg, world_size)
    cpu = cfg.device == "cpu"
    mixed = cfg.master_weights == "float32" and not cpu
    vllm = extra["vllm"]
    if vllm not in ("off", "colocate", "server"):
        raise SystemExit(f"--vllm must be off, colocate or server, got {vllm!r}")
    # TrainConfig validated dtype and master_weights; float32 master weights: load fp32, compute under autocast
    load_dtype = "float32" if cfg.master_weights == "float32" else cfg.dtype
    schedule = {"constant": "constant_with_warmup", "cosine": "cosine"}[cfg.lr_schedule]
    kw = dict(
        output_dir=str(Path(cfg.out) / "checkpoints"), use_cpu=cpu, seed=cfg.seed, report_to="none",
        bf16=mixed and cfg.dtype == "bfloat16", fp16=mixed and cfg.dtype == "float16",
        model_init_kwargs={"dtype": load_dtype}, max_steps=cfg.steps * cfg.mu, logging_steps=1, disable_tqdm=True,
        save_strategy="steps", save_steps=cfg.checkpoint_every * cfg.mu, save_total_limit=cfg.keep_checkpoints or None,
        per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation, num_generations=cfg.n,
        num_iterations=cfg.mu, max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        top_k=0, learning_rate=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps * cfg.mu,
        lr_scheduler_type=schedule, optim="adamw_torch", max_grad_norm=cfg.grad_clip,
        loss_type=LOSS_TYPES[cfg.agg], scale_rewards=cfg.scale, beta=cfg.beta, epsilon=cfg.eps_low,
        epsilon_high=cfg.eps_high, mask_truncated_completions=False, log_completions=False,
        gradient_checkpointing=cfg.gradient_checkpointing, dataloader_num_workers=0, shuffle_dataset=True,
        use_vllm=vllm != "off",
    )
    if vllm != "off":
        kw.update(vllm_mode=vllm, vllm_gpu_memory_utilization=extra["vllm_gpu_memory_utilization"],
                  vllm_tensor_parallel_size=extra["vllm_tensor_parallel_size"],
                  vllm_max_model_length=extra["vllm_max_model_len"] or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GRPOConfig(**kw)


def peft_config(extra: dict[str, Any]):
    """TRL's ``peft_config`` for ``--lora-r > 0`` (None for full fine-tuning)."""
    if extra["lora_r"] <= 0:
        return None
    from peft import LoraConfig  # the optional peft package (pip install peft)

    targets = extra["lora_target_modules"]
    return LoraConfig(r=extra["lora_r"], lora_alpha=extra["lora_alpha"], lora_dropout=extra["lora_dropout"],
                      target_modules=targets if targets == "all-linear" else targets.split(","), task_type="CAUSAL_LM")


def train_dataset(records, cfg, tokenizer):
    """The questions as TRL wants them, with the prompts evaluation samples with
    (:func:`obe.engines.models.build_prompt`, as obe.train): with a chat template, the messages (system
    prompt included), which TRL renders with the same template and ``add_generation_prompt``;
    else the built text, which TRL tokenizes with the tokenizer's special tokens as obe does."""
    from datasets import Dataset

    from obe.engines.models import ModelConfig, build_prompt, render_template, uses_chat_template

    pcfg = ModelConfig(name_or_path=cfg.model, prompt_template=cfg.prompt_template,
                       use_chat_template=cfg.use_chat_template, system_prompt=cfg.system_prompt or None)
    if uses_chat_template(tokenizer, pcfg):
        system = [{"role": "system", "content": pcfg.system_prompt}] if pcfg.system_prompt is not None else []
        prompts = [system + [{"role": "user", "content": render_template(pcfg.prompt_template, r.problem)}]
                   for r in records]
    else:
        prompts = [build_prompt(tokenizer, r.problem, pcfg) for r in records]
    return Dataset.from_dict({"prompt": prompts, "answer": [r.answer for r in records],
                              "question_id": [str(r.id) for r in records]})


# -- the CLI run --------------------------------------------------------------------------------


def save_model_dir(trainer, path: Path) -> None:
    """An HF directory for evaluation at ``path`` (atomic; LoRA merged into full weights)."""
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_adapter"):  # peft: evaluation wants plain weights
        model.merge_adapter()
        try:
            base = model.get_base_model()
            state = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}
            if trainer.accelerator.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                base.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
        finally:
            model.unmerge_adapter()
    else:
        trainer.save_model(str(tmp))  # gathers ZeRO-3 / FSDP shards
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(tmp))
        ckpt._publish(tmp, path)
    trainer.accelerator.wait_for_everyone()


def run(cfg, extra: dict[str, Any], *, rollout_func=None, on_end=None) -> dict[str, Any]:
    """Train with ``cfg`` (an :class:`obe.train.TrainConfig`) on TRL. Tests: ``rollout_func``
    replaces TRL's generation (``GRPOTrainer``'s own hook), ``on_end(trainer)`` runs on every
    rank after training."""
    import transformers
    from transformers import AutoTokenizer, TrainerCallback

    from obe.core.records import read_jsonl
    from obe.core.tracking import NullTracker, relog_rows, resumable_run_id, run_name, start_run
    from obe.core.progress import Progress
    from obe.tasks.synthetic import rollout_metrics as task_rollout_metrics
    from obe.train import (COMPLETION_COLUMNS, METRICS, RUN_OUTPUTS, config_mismatch, model_identity,
                           peak_memory_gb)

    check_trl_version()
    torch.set_num_threads(cfg.threads)
    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    out = Path(cfg.out)
    args = grpo_args(cfg, extra, int(os.environ.get("WORLD_SIZE", "1")))
    main = args.process_index == 0
    ck_root = out / "checkpoints"
    records = read_jsonl(cfg.train_data)
    if not records:
        raise SystemExit(f"{cfg.train_data}: no training questions")
    data_digest = hashlib.sha256("\n".join(r.id for r in records).encode()).hexdigest()
    model_id = model_identity(cfg.model)  # what the model is, not where it lives: a moved project resumes
    problem_of = {str(r.id): r.problem for r in records}
    full_config = dict(cfg.to_dict(), backend="trl", trl=dict(extra))
    last = latest_checkpoint(ck_root)
    if last is not None:
        state = read_state(last)
        state_cfg = dict(state["config"])
        why = config_mismatch(cfg, dict(state, config={k: v for k, v in state_cfg.items() if k not in ("backend", "trl")}),
                              data_digest, model_id)
        if why is None and state_cfg.get("trl") != dict(extra):
            why = "was made with other TRL settings"
        if why:
            if cfg.on_config_change != "restart":
                raise SystemExit(f"{out}: checkpoint {last.name} {why}; use another --out, the same options, "
                                 f"or --on-config-change restart")
            if main:  # set aside, never deleted: obe.train's rule for a restart
                aside = ckpt.supersede(out, f"checkpoint {last.name} {why}", move=[out / d for d in RUN_OUTPUTS])
                print(f"obe.engines.trl_backend: checkpoint {last.name} {why}; the old run is set aside in {aside}; "
                      f"starting over", file=sys.stderr, flush=True)
            last = None
    metrics_path, rollouts_path = out / "metrics.jsonl", out / "rollouts.jsonl"
    counts, solved = OutcomeCounts(), []
    if last is not None:
        state = read_state(last)
        counts, solved = OutcomeCounts.from_dict(state["counts"]), state["solved"]
    if main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.clean_partial(out)
        ckpt.clean_partial(out / "snapshots")
        ckpt.truncate_file(metrics_path, state["metrics_bytes"] if last else 0)
        ckpt.truncate_file(rollouts_path, state["rollouts_bytes"] if last else 0)
        (out / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")
        if last is not None:
            print(f"obe.engines.trl_backend: resuming from {last} (step {state['step']})", file=sys.stderr, flush=True)

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tracker = NullTracker()
    metrics_f = rollouts_f = None
    if main:
        metrics_f, rollouts_f = open(metrics_path, "a"), open(rollouts_path, "a")
        tracker = start_run(stage="train", name=run_name(cfg.method, cfg.seed), config=full_config,
                            experiment=cfg.experiment, wandb_dir=cfg.wandb_dir, tags=[cfg.method, "trl"],
                            run_id=resumable_run_id(out, resume=last is not None))
        if last is not None:
            relog_rows(tracker, metrics_path)
    progress = Progress(f"train {run_name(cfg.method, cfg.seed)} (trl)", cfg.steps,
                        start=read_state(last)["step"] if last else 0) if main else None
    distinct_q: dict[str, int] = {}
    for q, k, _ in counts:
        distinct_q[q] = distinct_q.get(q, 0) + (k not in SENTINEL_KEYS)
    pending: dict[str, Any] = {}
    stop: dict[str, Any] = {"signal": None}

    def on_signal(signum, frame):  # checked between steps (every rank gets it from Slurm / torchrun)
        stop["signal"] = signum
    old_handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_rollouts(info: dict[str, Any]) -> None:
        pending.update(info)

    Trainer = trainer_class()

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
                if main:
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
        # loss, grad norm, KL, clipping: means over the batch's mu updates; entropy: the first's (as obe.train)
        mean_of = lambda key: (sum(u[key] for u in updates) / len(updates)) if key in updates[0] else None  # noqa: E731
        logs = {k: mean_of(k) for k in ("loss", "grad_norm", "kl", "clip_ratio/region_mean", "clip_ratio/low_mean",
                                         "clip_ratio/high_mean")}
        logs["entropy"] = updates[0].get("entropy")
        rows, qids, keys_Bn, rewards_Bn, res = (pending[k] for k in ("rows", "qids", "keys_Bn", "rewards_Bn", "result"))
        B, n = rewards_Bn.shape
        S = B * n
        solved_B = rewards_Bn.amax(dim=1) > 0.5
        distinct_B = [len({k for k in ks if k not in SENTINEL_KEYS}) for ks in keys_Bn]
        for q in set(qids):
            distinct_q[q] = sum(k not in SENTINEL_KEYS for k in trainer.counts.question_counts(q))
        n_tok = torch.tensor([r[3] for r in rows], dtype=torch.float64)
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        row = {
            "step": step, "epoch": step * B / len(records), "loss": logs.get("loss"),
            "kl": logs.get("kl") if cfg.beta > 0 else None, "entropy": logs.get("entropy"),
            "entropy/correct": None, "entropy/incorrect": None,
            "clip_ratio": logs.get("clip_ratio/region_mean"), "clip_ratio/low": logs.get("clip_ratio/low_mean"),
            "clip_ratio/high": logs.get("clip_ratio/high_mean"), "grad_norm": logs.get("grad_norm"), "lr": pending["lr"],
            "reward": float(rewards_Bn.mean()),
            "reward_std": float(rewards_Bn.std(dim=1, correction=1 if cfg.std == "sample" else 0).nan_to_num(0.0).mean()),
            "frac_reward_zero_std": float((rewards_Bn.amax(dim=1) == rewards_Bn.amin(dim=1)).float().mean()),
            "frac_groups_solved": float(solved_B.float().mean()),
            "bonus/mean": float(res.bonus_Bn.mean()), "bonus/min": float(res.bonus_Bn.min()),
            "bonus/max": float(res.bonus_Bn.max()), "advantage/mean": float(res.sample_Bn.mean()),
            "answers/distinct_per_group": mean(distinct_B),
            "answers/distinct_solved": mean([d for d, s in zip(distinct_B, solved_B.tolist()) if s]),
            "answers/distinct_unsolved": mean([d for d, s in zip(distinct_B, solved_B.tolist()) if not s]),
            "answers/no_answer_frac": sum(r[1] in SENTINEL_KEYS for r in rows) / S,
            "cumulative/questions_solved": len(trainer.solved), "cumulative/questions_seen": trainer.counts.num_questions(),
            "cumulative/distinct_answers": mean(list(distinct_q.values())),
            "cumulative/distinct_answers_unsolved": mean([v for q, v in distinct_q.items() if q not in trainer.solved]),
            "counts/entries": trainer.counts.num_entries(),
            "completions/mean_length": float(n_tok.mean()), "completions/max_length": int(n_tok.max()),
            "completions/min_length": int(n_tok.min()), "completions/clipped_ratio": sum(r[4] for r in rows) / S,
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
            raise RuntimeError(f"metrics row lacks {sorted(set(METRICS) - set(row))}: obe.train's METRICS changed")
        metrics_f.write(json.dumps(row) + "\n")
        metrics_f.flush()
        for s, r in enumerate(rows):
            rollouts_f.write(json.dumps({"question_id": r[0], "step": step, "sample_index": s % n, "outcome_key": r[1],
                                         "correct": r[2], "num_tokens": r[3]}) + "\n")
        rollouts_f.flush()
        tracker.log({k: v for k, v in row.items() if v is not None}, step=step)
        if cfg.log_completions_every and (step == 1 or step % cfg.log_completions_every == 0):
            bonus_S = res.bonus_Bn.reshape(-1).tolist()
            tracker.log_table("completions", COMPLETION_COLUMNS, [
                [step, r[0], problem_of[r[0]], r[5], r[6], r[2], bonus_S[s], trainer.counts.count(r[0], r[1])]
                for s, r in enumerate(rows)], step=step)
        progress.update(step, reward=row["reward"], distinct=row["answers/distinct_per_group"],
                        tokens_per_s=round(row["perf/tokens_per_sec"] or 0))

    def file_lengths() -> dict[str, Any]:
        for f in (metrics_f, rollouts_f):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
        return {"metrics_bytes": metrics_path.stat().st_size if metrics_path.exists() else 0,
                "rollouts_bytes": rollouts_path.stat().st_size if rollouts_path.exists() else 0,
                "config": full_config, "data_digest": data_digest, "model_identity": model_id}

    trainer = Trainer(model=cfg.model, args=args, processing_class=tokenizer,
                      train_dataset=train_dataset(records, cfg, tokenizer), exploration=cfg.exploration(),
                      advantage=cfg.advantage(), counts=counts, solved=solved, on_rollouts=on_rollouts,
                      extract=ExtractConfig(cfg.reward_extract),
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
            if main:
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


def done_record(out: str | Path) -> dict[str, Any]:
    """done.json of a finished trl-backend run: the fields of ``obe.train --write-done`` (a test
    compares the two), with the step read from the newest complete TRL checkpoint."""
    from obe.train import finished_record, read_run_config

    out = Path(out).resolve()
    cfg = read_run_config(out)
    last = latest_checkpoint(out / "checkpoints")
    return finished_record(out, cfg, read_state(last)["step"] if last else 0)


def parse(argv: Optional[Sequence[str]] = None):
    """``(cfg, extra, args)``: obe.train's flags (its parser) plus the TRL-only ones."""
    from obe.train import TrainConfig, resolve_config

    own = {f.name for f in dataclasses.fields(TrainConfig)}
    ap = argparse.ArgumentParser(add_help=False)
    for name, (typ, default, help_) in EXTRA.items():
        if name in own:
            continue  # defined once, by obe.train
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
        from obe.train import print_metric_keys

        print_metric_keys()
        return 0
    summary = run(cfg, extra)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
