"""TRL's side of the trl backend: :class:`ObeGRPOTrainer` (``GRPOTrainer`` with obe's advantages,
built on first use by :func:`trainer_class`: importing trl is slow), its checkpoint files
(``checkpoint-N/obe_state.json``), and the ``GRPOConfig`` / ``peft_config`` / dataset that
:func:`grpo_args`, :func:`peft_config` and :func:`train_dataset` build from obe's
:class:`obe.training.config.TrainConfig`. The run itself (outputs, resume, logging, CLI) is
:mod:`obe.engines.trl_backend`'s; how the methods enter TRL is told in its docstring.

Overriding private methods ties this module to one TRL version (:data:`TRL_VERSION`); the
sources it relies on are pinned by hash (:data:`PINNED_SOURCES`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from obe.core import checkpoint as ckpt
from obe.engines.generation import derive_seed
from obe.grading import ExtractConfig, grade
from obe.rl.advantages import binary_rewards
from obe.rl.bonuses import apply_exploration
from obe.rl.counts import OutcomeCounts

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
            texts = [completion_text(c) for c in completions]
            graded = [grade(c, a, config=self.extract) for c, a in zip(texts, answer)]
            self._graded.extend(zip(question_id, graded, texts))
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
            group_size = self.num_generations
            if len(rows) % group_size:
                raise RuntimeError(f"global batch of {len(rows)} rows is not a multiple of n={group_size}")
            B = len(rows) // group_size
            groups = [rows[b * group_size:(b + 1) * group_size] for b in range(B)]
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


# -- model folders -------------------------------------------------------------------------------


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
