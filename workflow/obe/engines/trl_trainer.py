"""TRL's side of the trl backend: :class:`ExplorationGRPOTrainer` (``GRPOTrainer`` with obe's
advantages, built on first use by :func:`trainer_class` since importing trl is slow; public as
``obe.ExplorationGRPOTrainer``), its checkpoints (HF's ``checkpoint-N`` folders plus the run's state and manifest, :data:`TRL_LAYOUT`), and the
``GRPOConfig`` / ``peft_config`` / dataset that :func:`grpo_args`, :func:`peft_config` and
:func:`train_dataset` build from obe's :class:`obe.training.config.TrainConfig`. The run around
it (outputs, resume, logging, CLI) is :mod:`obe.engines.trl_backend`'s and
:class:`obe.training.run.TrainingRun`'s; how the methods enter TRL is told in trl_backend's docstring.

Overriding private methods ties this module to one TRL version (:data:`TRL_VERSION`); the
sources it overrides or relies on are pinned by hash (:data:`PINNED_SOURCES`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import torch

from obe.core import checkpoint as ckpt
from obe.core.seeds import derive_seed
from obe.engines import fsdp
from obe.grading import ExtractConfig, GradeResult, grade
from obe.rl.advantages import binary_rewards
from obe.rl.bonuses import StepAdvantages, apply_exploration
from obe.rl.counts import OutcomeCounts

TRL_VERSION = "1.16.0"  # the version whose private methods we override (see PINNED_SOURCES)
# sha256 of ``inspect.getsource`` of every TRL / transformers method this module overrides or
# relies on by name, recorded with trl 1.16.0 and transformers 5.17.0 (the gpu extra's pins,
# which the test extra installs too); tests/test_trl_backend.py fails when an upgrade changes one.
PINNED_SOURCES = {
    # overridden
    "trl.GRPOTrainer._generate_and_score_completions": "1fa48922792dcd5c72da155cfe99db477771a7c61cde15519fe8c86d0cdc0b65",
    "trl.GRPOTrainer._get_train_sampler": "36497afb4d311dc9a80d914d27893fe075c5bbc7edde8586edfa60125e980799",
    "transformers.Trainer._save_checkpoint": "a9111e30faa9933986e022e56b5af81fd990356db64d727b4c320c852283bf3b",
    # relied on: per-token advantages [B, T] accepted by the loss; generation once per mu updates
    # from the sampler's repeated batches; the sampler iterated once per epoch after the state
    # (epoch) is loaded; on_log before the checkpoint decision of a step
    "trl.GRPOTrainer._compute_loss": "80295546bbdbf6f711acce7f6e69b0100ab40aa8f23ed8052cc564ff024e3e40",
    "trl.GRPOTrainer._prepare_inputs": "f824e7fb0714795697c9b4d574de1e139dd5f4404c2554e92cf1db7f60fa6c96",
    "trl.GRPOTrainer.get_train_dataloader": "2bffe5a57c539e17dafbdec15ca8fce48aaee94599bc7900fbbf5618ba1c7bb5",
    "trl.RepeatSampler.__iter__": "d80412d80424bd645f7d74cdb8bdc1994c789d8ba03111ffe6eea20f789dea58",
    "transformers.Trainer._run_epoch": "ebe374933064ecd6fde3407599c2847c3d2fa3c4638bb976e2759299aa752b14",
    "trl.GRPOTrainer.training_step": "9e18632f7dd8e8d8f0ebbdcc4431feb1a9e3c037a02cf8c3aec38aa68ee58814",
    "transformers.Trainer._maybe_log_save_evaluate": "af101534f0f7b2d7fa6984044242e6f125c51092b05c755566c14823f2b43696",
}
CHECKPOINT_PREFIX = "checkpoint-"
# HF's checkpoint-<optimizer step> folders; the run's state in obe_state.json and the manifest,
# both written by ExplorationGRPOTrainer._save_checkpoint (a folder without a manifest is an unfinished save)
TRL_LAYOUT = ckpt.Layout(prefix=CHECKPOINT_PREFIX, state_file="obe_state.json", format="obe.trl_checkpoint",
                         legacy=False)
LOSS_TYPES = {"token_mean": "dapo", "seq_mean_token_mean": "grpo", "dr_grpo": "dr_grpo"}
VLLM_MODES = ("off", "colocate")


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
        raise RuntimeError(f"obe.engines.trl_trainer overrides private methods of trl {TRL_VERSION}; installed is "
                           f"trl {trl.__version__}. Install trl=={TRL_VERSION} (pyproject pins it).")


# -- the trainer ------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: TRL passes a string, or, when the prompts are chat
    messages, the assistant message(s) it wraps the text in (``[{"role": "assistant",
    "content": text}]``). Graded, masked and logged as text either way."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and all(isinstance(m, dict) for m in completion):
        parts = [m.get("content") for m in completion if m.get("role") == "assistant"]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise TypeError(f"not a completion TRL makes (a string or assistant messages): {completion!r:.300}")


class Sample(NamedTuple):
    """One completion of the batch, as every rank receives it from every rank."""

    question_id: str
    text: str
    graded: GradeResult
    num_tokens: int  # completion tokens, EOS included
    truncated: bool  # no EOS within the budget


@dataclass
class RolloutBatch:
    """A training batch after its advantages: the GLOBAL batch's samples (TRL's rank-major order,
    whose consecutive ``n`` rows are one question's group) and what the step record needs."""

    samples: list[Sample]
    question_ids: list[str]  # [B]
    rewards_Bn: torch.Tensor
    exploration: StepAdvantages
    lr: float
    started: float  # perf_counter() when generation began
    time_generate: float
    time_grade: float
    generated: float  # perf_counter() when the advantages were ready


class EpochSeededSampler(torch.utils.data.Sampler):
    """TRL's ``RepeatSampler`` with each epoch's shuffle seeded by ``derive_seed(seed, "epoch", e)``,
    the epoch read from ``epoch_of()`` (the trainer's state) each time it is iterated.

    TRL seeds one generator once, so a resumed run would replay epoch 0's order; HF's
    ``set_epoch`` does not reach it through accelerate's wrappers of a resumed multi-process
    dataloader (``SkipBatchSampler -> BatchSamplerShard -> BatchSampler``). Reading the epoch
    here makes the order a function of (seed, epoch) whatever the wrapping and the number of
    processes (the order of ``obe.training.numerics.batch_indices``' seeds)."""

    def __init__(self, inner, seed: int, epoch_of: Callable[[], int]):
        self.inner, self.seed, self.epoch_of = inner, seed, epoch_of

    def __iter__(self):
        self.inner.generator = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", self.epoch_of()))
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def _restore_indexed_cpu(obj, location: str):
    """A ``torch.load`` deserializer for the location ``cpu:N``: transformers loads the optimizer
    state of a multi-process run with ``map_location=args.device``, which on CPU processes is
    ``cpu:0``, a location torch's own deserializers leave unhandled (the resume then fails)."""
    return obj if location.startswith("cpu:") else None


def trl_advantages(args):
    """The group advantages TRL's GRPOTrainer computes for ``args`` (a ``GRPOConfig``), as obe's
    :class:`obe.rl.advantages.AdvantageConfig`: minus the group mean, divided by the group's
    sample std + 1e-4 (``scale_rewards="group"``) or not scaled (``"none"``)."""
    from obe.rl.advantages import AdvantageConfig

    scale = {"group": "group", True: "group", "none": "none", False: "none"}.get(args.scale_rewards)
    if scale is None:
        raise ValueError(f"scale_rewards={args.scale_rewards!r}: exploration's advantages are per group "
                         f"(\"group\" or \"none\")")
    return AdvantageConfig(scale=scale, std="sample", eps=1e-4)


def _make_trainer_class():
    from accelerate.utils import gather_object
    from trl import GRPOTrainer

    from obe.engines.rollout import answer_token_mask

    torch.serialization.register_package(100, lambda obj: None, _restore_indexed_cpu)

    class ExplorationGRPOTrainer(GRPOTrainer):
        """TRL's ``GRPOTrainer`` with the paper's exploration methods: rewards 1/0 from
        :func:`obe.grading.grade` (the completion's final answer against the dataset's ``answer``)
        and advantages from :func:`obe.rl.bonuses.apply_exploration` (GRPO's group advantages plus
        ``coef x`` the method's bonus on final answers, with a count table N(x, a) kept across the
        run and saved in every checkpoint). A drop-in for ``GRPOTrainer``::

            from obe import ExplorationConfig, ExplorationGRPOTrainer
            trainer = ExplorationGRPOTrainer(model=..., args=GRPOConfig(...), train_dataset=ds,
                                             processing_class=tok,
                                             exploration=ExplorationConfig(method="ucb_con", coef=0.2))
            trainer.train()

        The dataset needs ``prompt`` and ``answer`` columns; ``question_id`` (optional) keys the
        count table (default: the prompt). Extra arguments: ``exploration``
        (:class:`obe.rl.bonuses.ExplorationConfig`: method, coef, b0, gate_solved,
        mask_answer_tokens, ...), ``advantage`` (:class:`obe.rl.advantages.AdvantageConfig`;
        default TRL's own: the group's std, sample convention, eps 1e-4, or none with
        ``scale_rewards="none"``), ``extract`` (:class:`obe.grading.ExtractConfig` of the rewards)
        and ``run`` (an :class:`obe.training.run.TrainingRun`: the pipeline's own, which then owns
        the count table, checkpoint state and logs). After each training batch ``last_batch``
        holds its :class:`RolloutBatch`.
        """

        def __init__(self, *args, exploration, advantage=None, extract=None, run=None, **kwargs):
            check_trl_version()
            if "reward_funcs" in kwargs:
                raise TypeError("ExplorationGRPOTrainer's reward is obe.grading's 0/1 correctness of the final "
                                "answer; it takes no reward_funcs")
            self.exploration, self.advantage, self.run = exploration, advantage, run
            self.extract = extract if extract is not None else ExtractConfig()
            self.counts = run.counts if run is not None else OutcomeCounts()
            self.last_batch: Optional[RolloutBatch] = None
            self._graded: list[tuple[str, str, GradeResult]] = []
            self._grade_s = 0.0
            super().__init__(*args, reward_funcs=[self.correct], **kwargs)
            if self.advantage is None:
                self.advantage = trl_advantages(self.args)
            if self.use_vllm and self.vllm_mode == "colocate":
                self._seed_colocated_rollouts()

        def _seed_colocated_rollouts(self) -> None:
            # TRL builds its colocated vLLM engine with seed = rank // tensor-parallel size, which
            # re-seeds this process's RNGs, and vLLM samples from them: every run seed would then
            # draw the same rollouts. Seed them from the run's seed instead, the same within a
            # tensor-parallel group (whose ranks must sample alike); a resume restores HF's RNG state.
            from transformers import set_seed

            group = self.accelerator.process_index // self.args.vllm_tensor_parallel_size
            set_seed(derive_seed(self.args.seed, "vllm rollouts", group))

        def train(self, resume_from_checkpoint=None, **kwargs):
            # without the pipeline's run, the count table comes back from the checkpoint's state
            if self.run is None and resume_from_checkpoint:
                from transformers.trainer_utils import get_last_checkpoint

                folder = (get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True
                          else resume_from_checkpoint)
                if folder and (Path(folder) / TRL_LAYOUT.state_file).is_file():
                    self.counts = OutcomeCounts.from_dict(ckpt.read_state(folder, TRL_LAYOUT)["counts"])
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

        def correct(self, prompts, completions, answer, question_id=None, **kwargs) -> list[float]:
            """Reward 1/0 by obe.grading.grade on the completions' text; keeps the results for the advantages."""
            t = time.perf_counter()
            texts = [completion_text(c) for c in completions]
            graded = [grade(text, a, config=self.extract) for text, a in zip(texts, answer)]
            if question_id is None:  # the prompt is the question
                question_id = [p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in prompts]
            self._graded.extend(zip(map(str, question_id), texts, graded))
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
            lengths = cmask.sum(dim=1).tolist()
            eos = torch.tensor(self.eos_token_ids)
            local = [Sample(q, text, g, int(n_tok), not bool(torch.isin(cids[i, :int(n_tok)], eos).any()))
                     for i, ((q, text, g), n_tok) in enumerate(zip(self._graded, lengths))]
            samples = gather_object(local)  # the global batch, rank-major like TRL's gathered rewards
            n = self.num_generations
            if len(samples) % n:
                raise RuntimeError(f"global batch of {len(samples)} samples is not a multiple of n={n}")
            groups = [samples[b * n:(b + 1) * n] for b in range(len(samples) // n)]
            qids = [g[0].question_id for g in groups]
            if any(s.question_id != q for q, g in zip(qids, groups) for s in g):
                raise RuntimeError("a group of num_generations samples mixes questions: TRL's sampler layout changed")
            rewards_Bn = binary_rewards([[s.graded.correct for s in g] for g in groups])
            keys_Bn = [[s.graded.outcome_key for s in g] for g in groups]
            rank, L = self.accelerator.process_index, len(inputs)
            explored = apply_exploration(  # updates N(x, a) with the whole batch, identically on every rank
                rewards_Bn, keys_Bn, qids, self.counts, self.exploration, self.advantage, cmask,
                lambda: answer_token_mask(self.processing_class, cids, cmask, [s.text for s in local]),
                rows=slice(rank * L, (rank + 1) * L))
            out["advantages"] = explored.token_RT.to(device=out["completion_ids"].device, dtype=torch.float32)
            self.last_batch = RolloutBatch(samples, qids, rewards_Bn, explored, lr, t0, t1 - t0 - self._grade_s,
                                           self._grade_s, time.perf_counter())
            return out

        def _get_train_sampler(self, dataset=None):
            sampler = super()._get_train_sampler(dataset)
            if not getattr(sampler, "shuffle", False):
                return sampler
            return EpochSeededSampler(sampler, self.args.seed, lambda: int(self.state.epoch or 0))

        def _save_checkpoint(self, model, trial):
            # the run's state first, HF's files, then the manifest last: a folder with a manifest
            # is a complete checkpoint (obe.core.checkpoint.verify)
            folder = Path(self._get_output_dir(trial=trial)) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            step, global_step = self.obe_step, self.state.global_step
            state = (self.run.checkpoint_state(step, global_step=global_step) if self.run is not None  # a collective
                     else {"step": step, "global_step": global_step, "counts": self.counts.to_dict()})
            if self.args.should_save:
                folder.mkdir(parents=True, exist_ok=True)
                ckpt.write_state(folder, state, TRL_LAYOUT)
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()  # every rank's files (sharded state, RNG) are in
            if self.args.should_save:
                ckpt.write_manifest(folder)
            self.accelerator.wait_for_everyone()

        def training_step(self, model, inputs, num_items_in_batch):
            # FSDP2 under HF's no_sync would keep every micro-batch's gradient unsharded (docs/scale.md
            # counts 15-16 GB at 7-8B): reduce-scatter each micro-batch into the sharded fp32 gradient
            fsdp.sharded_accumulation(model)
            return super().training_step(model, inputs, num_items_in_batch)

        @property
        def obe_step(self) -> int:
            """obe's step (one rollout batch) = HF's optimizer steps / mu (TRL's num_iterations)."""
            return self.state.global_step // self.num_iterations

        def save_model_folder(self, path: Path) -> None:
            """An HF model folder for evaluation at ``path``, published atomically by the main
            process (every rank calls it): LoRA merged into plain weights."""
            path = Path(path)
            tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
            model = self.accelerator.unwrap_model(self.model)
            main = self.accelerator.is_main_process
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            if hasattr(model, "merge_adapter"):  # peft: evaluation wants plain weights
                model.merge_adapter()
                try:
                    base = model.get_base_model()
                    state = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}
                    if main:
                        base.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
                finally:
                    model.unmerge_adapter()
            elif fsdp.is_fsdp2(self.model):  # Trainer.save_model writes no weights under SHARDED_STATE_DICT
                state = fsdp.full_state_dict(self.model)  # a collective: every rank; the main one gets the tensors
                if main:
                    model.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
            else:
                self.save_model(str(tmp))
            if main:
                self.processing_class.save_pretrained(str(tmp))
                ckpt.publish(tmp, path)
            self.accelerator.wait_for_everyone()

    return ExplorationGRPOTrainer


_TRAINER_CLASS = None


def trainer_class():
    """The :class:`ExplorationGRPOTrainer` class (built on first use: importing trl is slow)."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        _TRAINER_CLASS = _make_trainer_class()
    return _TRAINER_CLASS


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
    """TRL's ``GRPOConfig`` for obe's ``TrainConfig`` (+ the TRL-only settings ``extra``). Saving
    is the run's decision (``save_strategy="no"``: obe.training.run.TrainingRun.end_of_step)."""
    import warnings

    from trl import GRPOConfig

    micro, accumulation = batch_layout(cfg, world_size)
    cpu = cfg.device == "cpu"
    mixed = cfg.master_weights == "float32" and not cpu
    vllm = extra["vllm"]
    if vllm not in VLLM_MODES:
        raise SystemExit(f"--vllm must be one of {VLLM_MODES}, got {vllm!r} (server mode needs a `trl vllm-serve` "
                         f"process on GPUs of its own, which nothing here starts; colocate shares the training GPUs)")
    # TrainConfig validated dtype and master_weights; float32 master weights: load fp32, compute under autocast
    load_dtype = "float32" if cfg.master_weights == "float32" else cfg.dtype
    schedule = {"constant": "constant_with_warmup", "cosine": "cosine"}[cfg.lr_schedule]
    kw = dict(
        output_dir=str(Path(cfg.out) / "checkpoints"), use_cpu=cpu, seed=cfg.seed, report_to="none",
        bf16=mixed and cfg.dtype == "bfloat16", fp16=mixed and cfg.dtype == "float16",
        model_init_kwargs={"dtype": load_dtype}, max_steps=cfg.steps * cfg.mu, logging_steps=1, disable_tqdm=True,
        save_strategy="no", save_total_limit=cfg.keep_checkpoints or None,
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
                  vllm_max_model_length=extra["vllm_max_model_len"] or None,
                  vllm_importance_sampling_correction=extra["vllm_importance_sampling_correction"])
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
