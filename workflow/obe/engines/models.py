"""Model loading and prompt building for any Hugging Face causal LM.

A :class:`ModelConfig` names a checkpoint (hub name or local directory, e.g. a training
checkpoint saved in HF format) plus how to load it (dtype, device, ``trust_remote_code``)
and how to turn a problem into a prompt (template, chat template, system prompt). Nothing
here is specific to the tiny test model: ``Qwen/Qwen2.5-7B``, ``meta-llama/Llama-3.1-8B-Instruct``
or ``Qwen/Qwen2.5-Math-1.5B`` are reachable by config alone, e.g.::

    ModelConfig.from_dict({"name_or_path": "Qwen/Qwen2.5-Math-1.5B", "dtype": "bfloat16",
                           "device": "cuda", "prompt_template": "{problem}\\nPlease reason "
                           "step by step, and put your final answer within \\\\boxed{}."})

Prompt building: ``prompt_template`` must contain ``{problem}``, which is replaced literally
(no ``str.format``, so LaTeX braces such as ``\\boxed{}`` are safe). If the tokenizer has a
chat template and ``use_chat_template`` is ``"auto"`` (or ``"always"``), the rendered text
becomes the user message (after an optional system message) and the chat template is applied
with ``add_generation_prompt=True``. Chat-templated prompts already carry the model's special
tokens, so they are tokenized with ``add_special_tokens=False`` (see
:func:`prompt_adds_special_tokens`); raw prompts get the tokenizer's usual special tokens
(e.g. BOS).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from obe.core.records import strict_from_dict
from obe.core.vocabulary import CHAT_TEMPLATE_MODES, DTYPES  # noqa: F401 (part of this module's API)



@dataclass(frozen=True)
class ModelConfig:
    """How to load a causal LM and build its prompts.

    name_or_path: hub name or local directory (HF format).
    dtype: ``float32`` | ``float16`` | ``bfloat16`` | ``auto`` (the checkpoint's own dtype).
    device: torch device string for the HF backend (``cpu``, ``cuda``, ``cuda:1``).
    trust_remote_code: off unless turned on explicitly.
    prompt_template: text containing ``{problem}``.
    use_chat_template: ``auto`` (apply if the tokenizer has one), ``always`` (error if it has
        none) or ``never``. Booleans are accepted in dicts (True -> always, False -> never).
    system_prompt: system message for chat templates; without a chat template it is prepended
        to the prompt followed by a blank line.
    tokenizer: tokenizer name/path when it differs from ``name_or_path``.
    revision: hub revision (branch, tag or commit) for both model and tokenizer.
    """

    name_or_path: str
    dtype: str = "float32"
    device: str = "cpu"
    trust_remote_code: bool = False
    prompt_template: str = "{problem}\n"
    use_chat_template: Literal["auto", "always", "never"] = "auto"
    system_prompt: str | None = None
    tokenizer: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        if not self.name_or_path:
            raise ValueError("ModelConfig.name_or_path must be non-empty")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; allowed: {list(DTYPES)}")
        mode = self.use_chat_template
        if isinstance(mode, bool):
            object.__setattr__(self, "use_chat_template", "always" if mode else "never")
        elif mode not in CHAT_TEMPLATE_MODES:
            raise ValueError(
                f"unknown use_chat_template {mode!r}; allowed: {list(CHAT_TEMPLATE_MODES)} or a bool"
            )
        if "{problem}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain '{{problem}}': {self.prompt_template!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return strict_from_dict(cls, d, "ModelConfig keys")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def torch_dtype(name: str):
    """Map a dtype name to a ``torch.dtype`` (``"auto"`` is passed through)."""
    import torch

    if name == "auto":
        return "auto"
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; allowed: {list(DTYPES)}") from None


def load_tokenizer(cfg: ModelConfig):
    """Load the tokenizer: left padding, pad token falling back to EOS when missing."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        cfg.tokenizer or cfg.name_or_path,
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
    )
    prepare_tokenizer(tok)
    return tok


def prepare_tokenizer(tok) -> None:
    """In place: pad token := EOS when missing; left padding (for batched generation)."""
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"


def load_model(cfg: ModelConfig):
    """Load ``AutoModelForCausalLM`` with the configured dtype and device, in eval mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        cfg.name_or_path,
        dtype=torch_dtype(cfg.dtype),
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
    )
    model.to(cfg.device)
    model.eval()
    return model


def load(cfg: ModelConfig):
    """``(model, tokenizer)`` for ``cfg``."""
    return load_model(cfg), load_tokenizer(cfg)


def uses_chat_template(tokenizer, cfg: ModelConfig) -> bool:
    """Whether prompts for ``cfg`` go through the tokenizer's chat template."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if cfg.use_chat_template == "never":
        return False
    if cfg.use_chat_template == "always" and not has:
        raise ValueError(
            f"use_chat_template='always' but the tokenizer of {cfg.name_or_path!r} has no chat template"
        )
    return has


def prompt_adds_special_tokens(tokenizer, cfg: ModelConfig) -> bool:
    """``add_special_tokens`` to use when tokenizing prompts built by :func:`build_prompt`."""
    return not uses_chat_template(tokenizer, cfg)


def render_template(template: str, problem: str) -> str:
    return template.replace("{problem}", problem)


def build_prompt(tokenizer, problem: str, cfg: ModelConfig) -> str:
    """The prompt text for one problem (chat template applied when configured/available)."""
    text = render_template(cfg.prompt_template, problem)
    if uses_chat_template(tokenizer, cfg):
        messages = []
        if cfg.system_prompt is not None:
            messages.append({"role": "system", "content": cfg.system_prompt})
        messages.append({"role": "user", "content": text})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if cfg.system_prompt is not None:
        return f"{cfg.system_prompt}\n\n{text}"
    return text


def build_prompts(tokenizer, problems: list[str], cfg: ModelConfig) -> list[str]:
    return [build_prompt(tokenizer, p, cfg) for p in problems]


def local_model(name_or_path: str, revision: str | None = None) -> str:
    """A folder holding the model: ``name_or_path`` itself when it is one, else the Hugging Face
    cache's snapshot of that hub model at ``revision`` (downloaded first when the hub is online;
    offline, :class:`obe.core.hub.NotFetched` says what to prefetch). Training loads from the folder, so
    every library it hands the model to (transformers, TRL, a colocated vLLM) reads the pinned files."""
    from pathlib import Path

    if Path(name_or_path).is_dir():
        return name_or_path
    from huggingface_hub import constants, snapshot_download

    from obe.core import hub

    if not constants.HF_HUB_OFFLINE:
        return snapshot_download(name_or_path, revision=revision, allow_patterns=hub.MODEL_FILES,
                                 ignore_patterns=hub.MODEL_IGNORE)
    path = hub.cached_snapshot(name_or_path, revision, "model", hub.MODEL_FILES, hub.MODEL_IGNORE)
    if path is None:
        raise hub.NotFetched(f"model {name_or_path}@{revision or 'main'} is not in the Hugging Face cache "
                             f"{hub.hub_cache()} and the hub is offline; fetch it where the hub is reachable, "
                             f"with the same HF_HOME: python -m obe.prefetch --configfile <the run's config files>")
    return str(path)

