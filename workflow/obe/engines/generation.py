"""Text generation: n completions per prompt from a Hugging Face model or a ``vllm.LLM``.

The library behind the sampling stage (:mod:`obe.sampling`), the base model's evaluation, the
trainer's rollouts and the benchmarks: sampling parameters (:class:`SamplingConfig`), the two
backends with one interface (``plan`` batches, ``run`` one batch), EOS ids, prompt tokenisation
and index-derived seeds (:func:`obe.core.seeds.derive_seed`), so that any sample can be reproduced from its
(seed, question id, sample index) without global RNG state.

``hf``: batched ``model.generate`` (KV cache, left padding, temperature / top-p / max new
tokens, stop at EOS), or with ``--engine lean`` (the CLI default on CPU for Llama/Qwen2
models, ``auto``) obe.engines.fastlm's sampling loop over the same weights, which samples the same
distribution several times faster on CPU but draws different samples for a seed; the
engine used is recorded in the meta. Rows (question, sample) are laid out question-major and cut into
contiguous batches of ``batch_size`` sequences; each batch is seeded with a hash of
``(seed, question id and sample index of its first row)`` inside a forked RNG (the caller's
global RNG state is left untouched). Output is therefore deterministic for a given seed,
batch size, device and thread count, and a resumed run reproduces the uninterrupted one.
Only our config shapes sampling: the checkpoint's ``generation_config.json`` sampling
defaults (top_k, repetition_penalty, ...) are ignored, as with vLLM's
``generation_config="vllm"``; top-k is off.

``vllm`` (GPU): ``vllm.LLM(model=dir, ...)`` built lazily (``import vllm`` happens inside the
backend only), ``LLM.generate`` with token-id prompts (tokenized here with the same
tokenizer and ``add_special_tokens`` rule as ``hf``) and one ``SamplingParams(n, temperature,
top_p, max_tokens, seed)`` per question, whose seed is a hash of ``(seed, question id)``
(vLLM derives per-sample seeds from it). Batches are whole questions. ``--max-model-len``
(context length; set it for 128k-context models on 40-80 GB cards), ``--tensor-parallel-size``
and ``--gpu-memory-utilization`` (0.9: the sampling job has the GPU to itself) go to
``vllm.LLM``; the dtype is ``--dtype`` (the config's ``base_model.dtype``).

NOT VERIFIED HERE (no GPU, vLLM not installed in the dev environment): the ``vllm.LLM``
construction and ``LLM.generate`` call themselves, and three assumptions about vLLM's
output: (1) ``CompletionOutput.token_ids`` includes the EOS token when
``finish_reason == "stop"`` (so ``num_tokens`` matches ``hf``'s convention), (2) outputs
come back in prompt order, and (3) ``CompletionOutput.index`` numbers the n samples 0..n-1.
Everything around the engine call (SamplingParams arguments, mapping
RequestOutput/CompletionOutput to rows, batching, resume) is unit-tested with a fake engine.
vLLM's numerics differ from ``hf``'s, so the two backends do not give identical samples.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from obe.core.seeds import derive_seed
from obe.engines.models import ModelConfig, load_tokenizer

DEFAULT_BATCH_SIZE = {"hf": 16, "vllm": 4096}
DEFAULT_DTYPE = {"hf": "float32", "vllm": "auto"}


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling parameters shared by both backends.

    temperature 0 means greedy decoding. batch_size is sequences (prompt x sample rows) per
    ``generate`` call for ``hf``; for ``vllm`` a batch holds ``max(1, batch_size // n)``
    whole questions. max_new_tokens 512 is the budget for evaluating real models (MATH solutions
    run to hundreds of tokens); the trainers' rollouts take theirs from obe.engines.rollout.RolloutConfig.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Completion:
    """One sampled completion."""

    text: str
    num_tokens: int
    finish_reason: str
    token_ids: tuple[int, ...] = ()


def eos_token_ids(model, tokenizer) -> list[int]:
    """EOS ids: the model's generation config (may be a list, e.g. Llama-3.1) + the tokenizer's."""
    ids: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    for source in (getattr(gen_cfg, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        for i in [source] if isinstance(source, int) else list(source):
            if i not in ids:
                ids.append(int(i))
    if not ids:
        raise ValueError("no EOS token id found in the model's generation config or the tokenizer")
    return ids


def tokenize_prompts(tokenizer, prompts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
    if not prompts:
        return []
    return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]]


Row = tuple[int, int]  # (question index, sample index)


class HFBackend:
    """``transformers`` model backend (CPU or GPU): ``model.generate``, or obe.engines.fastlm's lean
    sampling loop on the same weights (``engine``: see :func:`obe.engines.fastlm.resolve_engine`)."""

    name = "hf"

    def __init__(self, model, tokenizer, engine: str = "auto"):
        from transformers import GenerationConfig

        from obe.engines.fastlm import resolve_engine

        self.model = model
        self.lean = resolve_engine(engine, model, model.device)
        self.engine = "lean" if self.lean is not None else "hf"
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_ids[0])
        self._neutral = GenerationConfig()
        self._neutral.pad_token_id = self.pad_id
        self._neutral.eos_token_id = self.eos_ids

    def plan(self, num_questions: int, n: int, cfg: SamplingConfig) -> list[list[Row]]:
        rows = [(q, s) for q in range(num_questions) for s in range(n)]
        return [rows[i : i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]

    def _generation_config(self, cfg: SamplingConfig):
        from transformers import GenerationConfig

        kwargs: dict[str, Any] = dict(
            max_new_tokens=cfg.max_new_tokens,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            num_beams=1,
            use_cache=True,
        )
        if cfg.temperature > 0:
            kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False)
        return GenerationConfig(**kwargs)

    @contextlib.contextmanager
    def _only_our_generation_config(self) -> Iterator[None]:
        """Hide the checkpoint's generation defaults so only our config shapes sampling."""
        saved = self.model.generation_config
        self.model.generation_config = self._neutral
        try:
            yield
        finally:
            self.model.generation_config = saved

    def generate_batch(self, prompt_ids: Sequence[Sequence[int]], cfg: SamplingConfig, seed: int) -> list[Completion]:
        """One ``generate`` call over already-tokenized prompts (one sequence each)."""
        import torch

        device = self.model.device
        width = max(len(p) for p in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for i, ids in enumerate(prompt_ids):
            if ids:
                input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention_mask[i, width - len(ids) :] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        gen_cfg = self._generation_config(cfg)
        devices = [device] if device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices), self._only_our_generation_config():
            torch.manual_seed(seed)
            if self.lean is not None:
                new = self.lean.generate(input_ids, attention_mask, max_new_tokens=cfg.max_new_tokens,
                                         eos_token_ids=self.eos_ids, pad_token_id=self.pad_id,
                                         temperature=cfg.temperature, top_p=cfg.top_p)
            else:
                new = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                          generation_config=gen_cfg)[:, width:]
        return [self._completion(row) for row in new.tolist()]

    def _completion(self, generated: list[int]) -> Completion:
        eos = set(self.eos_ids)
        for i, tok in enumerate(generated):
            if tok in eos:
                ids = generated[: i + 1]
                text = self.tokenizer.decode(generated[:i], skip_special_tokens=True)
                return Completion(text, len(ids), "stop", tuple(ids))
        return Completion(self.tokenizer.decode(generated, skip_special_tokens=True), len(generated), "length", tuple(generated))

    def run(self, prompt_ids: Sequence[Sequence[int]], keys: Sequence[str], batch: list[Row], cfg: SamplingConfig) -> list[Completion]:
        """Completions for ``batch`` (rows of (question index, sample index)), in order."""
        q0, s0 = batch[0]
        seed = derive_seed(cfg.seed, keys[q0], s0)
        return self.generate_batch([prompt_ids[q] for q, _ in batch], cfg, seed)


def vllm_sampling_kwargs(n: int, cfg: SamplingConfig, seed: int) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` for one question with n samples."""
    return dict(
        n=n,
        temperature=float(cfg.temperature),
        top_p=float(cfg.top_p),
        max_tokens=int(cfg.max_new_tokens),
        seed=int(seed),
        skip_special_tokens=True,
    )


def completion_from_vllm(output) -> Completion:
    """Map a vLLM ``CompletionOutput`` (text, token_ids, finish_reason) to a :class:`Completion`."""
    # Recorded as given: "abort", "error" or "repetition" on one sequence must not kill a job
    # holding thousands of finished samples (the summary counts them).
    reason = str(output.finish_reason) if output.finish_reason is not None else "unknown"
    token_ids = tuple(int(t) for t in output.token_ids)
    return Completion(output.text, len(token_ids), reason, token_ids)


class VLLMBackend:
    """vLLM backend. ``llm`` is a ``vllm.LLM`` (or any object with its ``generate`` signature).

    ``sampling_params_factory`` builds SamplingParams from :func:`vllm_sampling_kwargs`
    (default: ``vllm.SamplingParams``, imported lazily).
    """

    name = "vllm"

    def __init__(self, llm, tokenizer=None, sampling_params_factory: Callable[..., Any] | None = None):
        self.llm = llm
        self.tokenizer = tokenizer
        self._factory = sampling_params_factory

    @classmethod
    def from_config(
        cls,
        model_cfg: ModelConfig,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        **engine_kwargs: Any,
    ) -> "VLLMBackend":
        """Start a ``vllm.LLM`` on ``model_cfg.name_or_path`` (a hub name or HF-format checkpoint dir)."""
        import vllm  # lazy: GPU-only dependency

        kwargs = dict(
            model=model_cfg.name_or_path,
            tokenizer=model_cfg.tokenizer or model_cfg.name_or_path,
            revision=model_cfg.revision,
            tokenizer_revision=model_cfg.revision,  # else vLLM reads the tokenizer at `main`, absent offline
            dtype=model_cfg.dtype,
            trust_remote_code=model_cfg.trust_remote_code,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            generation_config="vllm",  # ignore the checkpoint's sampling defaults, like the hf backend
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(engine_kwargs)
        llm = vllm.LLM(**kwargs)
        return cls(llm, load_tokenizer(model_cfg))

    def _sampling_params(self, **kwargs):
        if self._factory is None:
            from vllm import SamplingParams

            self._factory = SamplingParams
        return self._factory(**kwargs)

    def plan(self, num_questions: int, n: int, cfg: SamplingConfig) -> list[list[Row]]:
        per = max(1, cfg.batch_size // n)
        return [
            [(q, s) for q in range(start, min(start + per, num_questions)) for s in range(n)]
            for start in range(0, num_questions, per)
        ]

    def generate_questions(
        self, prompt_ids: Sequence[Sequence[int]], seeds: Sequence[int], n: int, cfg: SamplingConfig
    ) -> list[list[Completion]]:
        """n completions for each prompt, the i-th prompt seeded with ``seeds[i]``."""
        prompts = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        params = [self._sampling_params(**vllm_sampling_kwargs(n, cfg, s)) for s in seeds]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        result = []
        for req in outputs:
            comps = sorted(req.outputs, key=lambda o: o.index)
            if len(comps) != n:
                raise RuntimeError(f"vLLM returned {len(comps)} completions for a request with n={n}")
            result.append([completion_from_vllm(o) for o in comps])
        return result

    def run(self, prompt_ids: Sequence[Sequence[int]], keys: Sequence[str], batch: list[Row], cfg: SamplingConfig) -> list[Completion]:
        questions: list[int] = []
        for q, _ in batch:
            if not questions or questions[-1] != q:
                questions.append(q)
        n = len(batch) // len(questions)
        if [(q, s) for q in questions for s in range(n)] != list(batch):
            raise ValueError("vLLM batches must hold all n samples of whole questions")
        seeds = [derive_seed(cfg.seed, keys[q]) for q in questions]
        per_q = self.generate_questions([prompt_ids[q] for q in questions], seeds, n, cfg)
        return [c for comps in per_q for c in comps]


def is_vllm_engine(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "vllm"


def make_backend(model, tokenizer, engine: str = "auto"):
    """The backend for a loaded HF model (with that ``engine``) or a ``vllm.LLM``."""
    return VLLMBackend(model, tokenizer) if is_vllm_engine(model) else HFBackend(model, tokenizer, engine)


def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int,
    cfg: SamplingConfig,
    *,
    add_special_tokens: bool = True,
    keys: Sequence[str] | None = None,
    progress: bool = False,
    engine: str = "auto",
) -> list[list[Completion]]:
    """n completions per prompt (in-process API for evaluation / base-model stages).

    ``model`` is a HF causal LM, a ``vllm.LLM`` or a backend object. ``keys`` (default: the
    prompt indices) are the per-question seed keys; pass question ids to get exactly the
    samples the CLI would produce. Use ``add_special_tokens=models.prompt_adds_special_tokens(...)``
    for prompts built by :func:`obe.engines.models.build_prompt`. ``engine``: as the CLI's ``--engine``
    (HF models only).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    backend = model if hasattr(model, "plan") and hasattr(model, "run") else make_backend(model, tokenizer, engine)
    keys = [str(i) for i in range(len(prompts))] if keys is None else list(keys)
    if len(keys) != len(prompts):
        raise ValueError("keys and prompts must have the same length")
    prompt_ids = tokenize_prompts(tokenizer, prompts, add_special_tokens)
    result: list[list[Completion]] = [[] for _ in prompts]
    batches = backend.plan(len(prompts), n, cfg)
    bar = _progress(sum(len(b) for b in batches), 0, disable=not progress)
    for batch in batches:
        for (q, _), comp in zip(batch, backend.run(prompt_ids, keys, batch, cfg)):
            result[q].append(comp)
        bar.update(len(batch))
    bar.close()
    return result


def _progress(total: int, initial: int, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="sample", desc="sampling", disable=disable, dynamic_ncols=True)
