"""The run config of both trainers: :class:`TrainConfig` (one frozen dataclass), its help text,
the CLI parser built from its fields, and :func:`resolve_config` (YAML file, then flags).

Each default is defined once. The exploration settings take theirs from
:class:`obe.rl.bonuses.ExplorationConfig`, the loss settings from :class:`obe.rl.loss.LossConfig`
and the rollout settings from :class:`RolloutConfig`; the pipeline's rules pass
every value explicitly (config.yaml), so these defaults only matter for runs by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

from obe.core.vocabulary import CHAT_TEMPLATE_MODES, DTYPES, ENGINES
from obe.grading import EXTRACT_MODES
from obe.rl.advantages import AdvantageConfig
from obe.rl.bonuses import BONUSES, EXPLORATION_FIELDS, ExplorationConfig, exploration_defaults, exploration_help
from obe.rl.loss import AGGREGATIONS, LossConfig
from obe.training.callbacks import canonical_spec

PROG = "python -m obe.train"
DESCRIPTION = "RL training stage: GRPO with outcome-based exploration (Song, Kempe & Munos 2025)."
MASTER_WEIGHTS = ("float32", "model")

@dataclass(frozen=True)
class RolloutConfig:
    """Sampling options of the trainer's rollouts.

    n: samples per question; temperature > 0 (pure sampling, top-k off); top_p in (0, 1];
    max_new_tokens: completion budget (a sample that hits it is "truncated");
    prompt_template: text with ``{problem}`` (replaced literally, as :mod:`obe.engines.models`).
    These defaults are the trainers' (:class:`TrainConfig` takes them from here); the
    sampling stage's budget (obe.engines.generation.SamplingConfig, 512) is for evaluating real
    models and stays separate.
    """

    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    prompt_template: str = "{problem}\n"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for RL rollouts, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if "{problem}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain '{{problem}}': {self.prompt_template!r}")



_EXPLORE = exploration_defaults()


@dataclass(frozen=True)
class TrainConfig:
    """The run config (CLI flags = field names with dashes; YAML keys = field names)."""

    model: str = ""
    revision: str = ""
    train_data: str = ""
    out: str = ""
    # the exploration settings: defaults and help defined once, by obe.rl.bonuses.ExplorationConfig
    method: str = "grpo"
    coef: float = _EXPLORE["coef"]
    b0: float = _EXPLORE["b0"]
    leave_one_out: bool = _EXPLORE["leave_one_out"]
    count_before_update: bool = _EXPLORE["count_before_update"]
    gate_solved: bool = _EXPLORE["gate_solved"]
    mask_answer_tokens: bool = _EXPLORE["mask_answer_tokens"]
    bonus_in_reward: bool = _EXPLORE["bonus_in_reward"]
    seed: int = 0
    steps: int = 100
    batch_questions: int = 16
    n: int = RolloutConfig.n  # the group size (samples per question); flag and saved key stay "n"
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    # the rollout settings: defaults defined once, by RolloutConfig
    max_new_tokens: int = RolloutConfig.max_new_tokens
    temperature: float = RolloutConfig.temperature
    top_p: float = RolloutConfig.top_p
    prompt_template: str = RolloutConfig.prompt_template
    # the loss settings: defaults defined once, by obe.rl.loss.LossConfig
    eps_low: float = LossConfig.eps_low
    eps_high: float = LossConfig.eps_high
    beta: float = LossConfig.beta
    agg: str = LossConfig.agg
    scale: str = "group"
    std: str = "sample"
    adv_eps: float = 1e-6
    mu: int = 1
    grad_clip: float = 1.0
    micro_batch: int = 0
    rollout_batch: int = 0
    log_completions_every: int = 0
    gradient_checkpointing: bool = False
    dtype: str = "float32"
    master_weights: str = "float32"
    use_chat_template: str = "auto"
    system_prompt: str = ""
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    save_steps: tuple[int, ...] = ()
    threads: int = 2
    device: str = "cpu"
    engine: str = "auto"
    reward_extract: str = "math_verify"
    experiment: str = "default"
    wandb_dir: str = ""
    on_config_change: str = "error"
    max_grading_error_frac: float = 0.01
    callbacks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.save_steps, str):
            object.__setattr__(self, "save_steps", tuple(int(s) for s in self.save_steps.split(",") if s.strip()))
        object.__setattr__(self, "save_steps", tuple(sorted(int(s) for s in self.save_steps)))
        object.__setattr__(self, "callbacks", tuple(canonical_spec(c) for c in self.callbacks))
        if not 0.0 <= self.max_grading_error_frac <= 1.0:
            raise ValueError(f"max_grading_error_frac must be in [0, 1], got {self.max_grading_error_frac}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.master_weights not in MASTER_WEIGHTS:
            raise ValueError(f"master_weights must be one of {MASTER_WEIGHTS}, got {self.master_weights!r}")
        if self.use_chat_template not in CHAT_TEMPLATE_MODES:
            raise ValueError(f"use_chat_template must be one of {CHAT_TEMPLATE_MODES}, got {self.use_chat_template!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        for name in ("steps", "batch_questions", "mu", "threads", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.advantage(), self.exploration(), self.loss(), self.rollout()  # validate

    def advantage(self) -> AdvantageConfig:
        return AdvantageConfig(scale=self.scale, std=self.std, eps=self.adv_eps)

    def exploration(self) -> ExplorationConfig:
        return ExplorationConfig(**{name: getattr(self, name) for name in EXPLORATION_FIELDS})

    def loss(self) -> LossConfig:
        return LossConfig(eps_low=self.eps_low, eps_high=self.eps_high, beta=self.beta, agg=self.agg,
                          max_completion_length=self.max_new_tokens)

    def rollout(self) -> RolloutConfig:
        return RolloutConfig(n=self.n, temperature=self.temperature, top_p=self.top_p,
                             max_new_tokens=self.max_new_tokens, prompt_template=self.prompt_template)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["save_steps"] = list(self.save_steps)
        d["callbacks"] = list(self.callbacks)
        return d


HELP = {
    "model": "HF model directory (or hub name) of the initial policy (and reference)",
    "revision": "hub revision (a commit) of --model when it names a hub model (base_model.revision); it is "
                "loaded from that snapshot in the Hugging Face cache ('' = main)",
    "train_data": "training questions, Record JSONL (obe.core.records)",
    "out": "stage output directory (final/, checkpoints/, snapshots/, metrics.jsonl, rollouts.jsonl)",
    **exploration_help(),  # method, coef, b0, leave_one_out, ... (obe.rl.bonuses.ExplorationConfig)
    "seed": "run seed (data order, rollouts)", "steps": "training steps (one batch each)",
    "batch_questions": "questions per step (B)", "n": "samples per question",
    "lr": "AdamW peak learning rate", "weight_decay": "AdamW weight decay",
    "warmup_steps": "linear warmup steps", "lr_schedule": "after warmup: constant or cosine to 0",
    "max_new_tokens": "completion budget", "temperature": "sampling temperature (also used for log-probs)",
    "top_p": "nucleus sampling", "prompt_template": "prompt text with {problem}",
    "eps_low": "ratio clip 1 - eps_low", "eps_high": "ratio clip 1 + eps_high (DAPO clip-higher)",
    "beta": "k3 KL coefficient (0 loads no reference model)", "agg": "loss aggregation",
    "scale": "group: divide by group std; none: only centre", "std": "std convention (ddof 1 / 0)",
    "adv_eps": "eps added to the group std", "mu": "optimizer updates per batch",
    "grad_clip": "max gradient norm (0 = off)", "micro_batch": "sequences per forward/backward (0 = all)",
    "rollout_batch": "sequences per rollout generate call, whole questions (0 = all B x n at once)",
    "log_completions_every": "W&B table of every completion (prompt, completion, answer, correct, bonus, "
                             "count N(x, a) after the step) at step 1 and every K steps (0 = never)",
    "gradient_checkpointing": "recompute activations in the backward pass (hf engine; less memory, about a third more time)",
    "dtype": "model dtype (base_model.dtype): the reference model's, and the compute dtype of the policy",
    "master_weights": "float32: policy weights, gradients and AdamW state in fp32, forward/backward under "
                      "autocast(dtype) (mixed precision); model: all kept in dtype (pure low precision)",
    "use_chat_template": "auto | always | never: build prompts as evaluation does (obe.engines.models.build_prompts)",
    "system_prompt": "system message for chat templates ('' = none)",
    "checkpoint_every": "save a resumable checkpoint every K steps (and at the end)",
    "keep_checkpoints": "keep the newest K checkpoints (0 = all)",
    "save_steps": "comma-separated steps whose HF model is saved to snapshots/step_N for evaluation",
    "threads": "torch CPU threads", "device": "torch device of the policy (cpu, cuda, ...)",
    "engine": "rollouts and log-probs: lean (obe.engines.fastlm, Llama/Qwen2 only), hf (model.generate + HF forward), "
              "auto (lean on CPU when the model is supported, else hf)",
    "reward_extract": "where a reward's answer is read: math_verify (the last box, else Math-Verify's extraction) "
                      "or boxed (only a complete \\boxed{} counts)",
    "experiment": "W&B group", "wandb_dir": "W&B directory (default OUT)",
    "on_config_change": "a checkpoint made with another config: error (refuse) or restart (set the old run aside in OUT/superseded/, start over)",
    "max_grading_error_frac": "stop the run when more than this fraction of the samples graded so far raised inside "
                              "the grader (each one is logged with its input and counted as grading/errors)",
    "callbacks": "code to call at fixed moments of the run: module:Name or file.py:Name, optionally =JSON keyword "
                 "arguments (obe.training.callbacks); repeat the flag for several",
}
CHOICES = {"method": sorted(BONUSES), "engine": list(ENGINES), "dtype": list(DTYPES), "reward_extract": list(EXTRACT_MODES),
           "master_weights": list(MASTER_WEIGHTS), "use_chat_template": list(CHAT_TEMPLATE_MODES),
           "on_config_change": ["error", "restart"], "lr_schedule": ["constant", "cosine"], "scale": ["group", "none"],
           "std": ["population", "sample"], "agg": list(AGGREGATIONS)}


def build_parser() -> argparse.ArgumentParser:
    """The CLI of both trainers: ``--config`` (YAML), one flag per :class:`TrainConfig` field, and
    the two non-training actions ``--list-metrics`` and ``--write-done``."""
    ap = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                 epilog="Metric keys: --list-metrics. Resume: run the same command again.")
    ap.add_argument("--config", help="YAML file with any of the keys below (underscores); flags override it")
    ap.add_argument("--list-metrics", action="store_true", help="print every logged metric key and exit")
    ap.add_argument("--write-done", metavar="OUT", help="print done.json of the finished run in OUT (exit 1 if unfinished)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = "required" if f.name in ("model", "train_data", "out") else f"default: {f.default!r}"
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=f"{HELP[f.name]} ({default})")
        if f.name == "callbacks":
            ap.add_argument("--callback", action="append", **kw)
        elif f.type == "bool":
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            conv = {"int": int, "float": float}.get(f.type, str)
            ap.add_argument(flag, type=conv, choices=CHOICES.get(f.name), **kw)
    return ap


def resolve_config(argv: Optional[Sequence[str]] = None) -> tuple[Optional[TrainConfig], argparse.Namespace]:
    """``(cfg, args)``: the YAML of ``--config`` overridden by the flags, input and output paths made
    absolute; ``cfg`` is None for ``--list-metrics`` / ``--write-done``. SystemExit names a bad key."""
    args = build_parser().parse_args(argv)
    if args.list_metrics or args.write_done:
        return None, args
    allowed = [f.name for f in fields(TrainConfig)]
    values: dict[str, Any] = {}
    if args.config:
        import yaml

        data = yaml.safe_load(Path(args.config).read_text()) or {}
        for key in data:
            if key.replace("-", "_") not in allowed:
                raise SystemExit(f"{args.config}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
        values.update({k.replace("-", "_"): v for k, v in data.items()})
    values.update({k: v for k, v in vars(args).items() if k in allowed})
    for key in ("model", "train_data", "out"):
        if not values.get(key):
            raise SystemExit(f"--{key.replace('_', '-')} is required")
    for key in ("train_data", "out"):
        values[key] = str(Path(values[key]).resolve())
    if Path(values["model"]).exists():
        values["model"] = str(Path(values["model"]).resolve())
    values.setdefault("wandb_dir", values["out"])
    try:
        return TrainConfig(**values), args
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"invalid config: {exc}") from None


# Keys of the pipeline config's `train:` section that shape the DAG or the launch rather than one
# run (the others are TrainConfig fields, passed as they are), and the TrainConfig fields that
# other sections hold, once each (tests/test_training_run.py ties both to TrainConfig and the schema).
TRAIN_PIPELINE_KEYS = ("methods", "seeds", "backend", "lora", "vllm_importance_sampling_correction")
TRAIN_FIELDS_ELSEWHERE = {"base_model": ("dtype", "use_chat_template", "system_prompt", "prompt_template", "revision"),
                          "sampling": ("max_new_tokens", "temperature", "top_p")}


def pipeline_settings(config: dict[str, Any], method: str, seed: int, save_steps: Sequence[int]) -> dict[str, Any]:
    """One run's settings (TrainConfig field -> value) from the pipeline config: the `train:`
    section, the fields other sections hold, the method's `methods.<m>` entry (whose `method:`
    names the registry method of a variant; default the entry's own name), the seed and the
    steps whose snapshots are evaluated."""
    settings = {k: v for k, v in config["train"].items() if k not in TRAIN_PIPELINE_KEYS}
    for section, keys in TRAIN_FIELDS_ELSEWHERE.items():
        settings.update({k: config[section][k] for k in keys if config[section].get(k) is not None})
    entry = dict(config["methods"][method])
    settings.update(method=entry.pop("method", method), seed=seed, save_steps=list(save_steps), **entry)
    return settings


def settings_flags(settings: dict[str, Any]) -> list[str]:
    """Settings as the trainers' flags: bools as --x / --no-x, the steps comma-separated, one
    --callback per callback."""
    args = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif key == "callbacks":
            args += [f"--callback={canonical_spec(c)}" for c in value]
        elif key == "save_steps":
            args.append(f"{flag}={','.join(str(x) for x in value)}")
        else:
            args.append(f"{flag}={value}")
    return args

