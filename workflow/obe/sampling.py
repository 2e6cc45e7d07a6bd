"""Sampling stage: n completions per question, one JSONL row per sample.

Two backends share one interface and one row schema (:data:`ROW_FIELDS`):

``question_id, sample_index, prompt, text, num_tokens, finish_reason, answer, outcome_key, correct``

``num_tokens`` counts completion tokens up to and including the EOS token that ended the
sample (no padding); ``finish_reason`` is ``"stop"`` (an EOS was produced) or ``"length"``
(``max_new_tokens`` reached), and with vLLM whatever else the engine reports (``"abort"``,
``"error"``, ``"repetition"``, ...): every reason is recorded as given, counted in the stage's
summary and log, and graded like any text; no reason stops the job. ``text`` is the decoded completion without special tokens.
This stage writes ``answer``/``outcome_key``/``correct`` as null; ``python -m obe.grade``
fills them, so a grader change never reruns sampling.

Backends
--------
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

Resume guarantees. Both backends: a resumed output holds every (question, sample) row exactly
once, in order, made with the recorded parameters (rows are checked by identity, finished
batches are kept and the rest is sampled again). ``hf``: the resumed file is also byte-identical
to an uninterrupted run on the same device and thread count. ``vllm``: not bitwise reproducible
(batching and kernels vary between runs unless vLLM's batch-invariant mode is on), so resampled
batches are new draws from the same distribution; ``--tensor-parallel-size`` and
``--gpu-memory-utilization`` may change on resume, ``--max-model-len`` may not.

NOT VERIFIED HERE (no GPU, vLLM not installed in the dev environment): the ``vllm.LLM``
construction and ``LLM.generate`` call themselves, and three assumptions about vLLM's
output: (1) ``CompletionOutput.token_ids`` includes the EOS token when
``finish_reason == "stop"`` (so ``num_tokens`` matches ``hf``'s convention), (2) outputs
come back in prompt order, and (3) ``CompletionOutput.index`` numbers the n samples 0..n-1.
Everything around the engine call (SamplingParams arguments, mapping
RequestOutput/CompletionOutput to rows, batching, resume) is unit-tested with a fake engine.
vLLM's numerics differ from ``hf``'s, so the two backends do not give identical samples.

CLI
---
``python -m obe.sampling --model DIR --data X.jsonl --n 32 --seed 0 --out samples.jsonl``
(see ``--help``). Rows are appended and flushed batch by batch; a sidecar
``<out>.meta.json`` records model, seed and sampling parameters. Re-running on an existing
output resumes: a partial trailing line (from a kill) and rows of an unfinished batch are
discarded, finished batches are skipped, and the final file is byte-identical to an
uninterrupted run. Resuming with different parameters is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from obe.core.progress import Progress
from obe.engines.models import ModelConfig, load_model, load_tokenizer, prompt_adds_special_tokens, build_prompts
from obe.core.tracking import add_wandb_args, log_stage_summary

ROW_FIELDS = (
    "question_id",
    "sample_index",
    "prompt",
    "text",
    "num_tokens",
    "finish_reason",
    "answer",
    "outcome_key",
    "correct",
)
FINISH_REASONS = ("stop", "length")  # what the hf backend produces; vLLM may report others
META_FORMAT = 1
DEFAULT_BATCH_SIZE = {"hf": 16, "vllm": 4096}
DEFAULT_DTYPE = {"hf": "float32", "vllm": "auto"}


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling parameters shared by both backends.

    temperature 0 means greedy decoding. batch_size is sequences (prompt x sample rows) per
    ``generate`` call for ``hf``; for ``vllm`` a batch holds ``max(1, batch_size // n)``
    whole questions.
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


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from JSON-serialisable parts (same across processes/platforms)."""
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


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


def sample_row(question_id: str, sample_index: int, prompt: str, comp: Completion) -> dict[str, Any]:
    return {
        "question_id": question_id,
        "sample_index": sample_index,
        "prompt": prompt,
        "text": comp.text,
        "num_tokens": comp.num_tokens,
        "finish_reason": comp.finish_reason,
        "answer": None,
        "outcome_key": None,
        "correct": None,
    }


def encode_row(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- resume / meta


def meta_path(out: str | Path) -> Path:
    return Path(str(out) + ".meta.json")


# Meta keys recorded for information only (not compared on resume): where the data lives, and
# vLLM engine settings that change speed and memory, not the sampling distribution.
INFO_META_KEYS = ("data", "vllm_engine")


def check_or_write_meta(out: Path, meta: dict[str, Any]) -> None:
    """Refuse to resume ``out`` if its sidecar meta differs; write the meta for a fresh run."""
    mpath = meta_path(out)
    has_rows = out.exists() and out.stat().st_size > 0
    if has_rows:
        if not mpath.exists():
            raise ResumeError(
                f"{out} exists but has no sidecar {mpath.name}; cannot tell how it was made. "
                "Delete it (or choose another --out) to start over."
            )
        old = json.loads(mpath.read_text(encoding="utf-8"))
        diffs = [
            f"  {k}: existing={old.get(k)!r} requested={meta.get(k)!r}"
            for k in sorted(set(old) | set(meta))
            if k not in INFO_META_KEYS and old.get(k) != meta.get(k)
        ]
        if diffs:
            raise ResumeError(
                f"refusing to resume {out}: it was made with different parameters:\n" + "\n".join(diffs)
                + "\nDelete it (and its .meta.json) or choose another --out."
            )
        return
    tmp = mpath.with_name(mpath.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, mpath)


class ResumeError(RuntimeError):
    pass


def resume_point(out: Path, batches: list[list[Row]], keys: Sequence[str],
                 reasons: dict[str, int] | None = None) -> tuple[int, int]:
    """``(finished batches, byte offset of their end)`` for an existing (possibly killed) output.

    Complete lines are checked against the expected (question_id, sample_index) sequence; a
    partial trailing line and rows of an unfinished batch are not counted. ``reasons`` (if
    given) receives the finish-reason counts of the rows kept.
    """
    if not out.exists():
        return 0, 0
    data = out.read_bytes()
    expected = [(keys[q], s) for batch in batches for q, s in batch]
    ends: list[int] = []  # byte offset after each valid complete row
    row_reasons: list[str] = []
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break  # no newline: partial trailing line (or nothing left)
        line = data[pos:nl]
        try:
            row = json.loads(line)
        except ValueError:
            raise ResumeError(f"{out}: corrupt line {len(ends) + 1} (not JSON); cannot resume") from None
        i = len(ends)
        got = (row.get("question_id"), row.get("sample_index")) if isinstance(row, dict) else None
        if i >= len(expected) or got != expected[i]:
            want = expected[i] if i < len(expected) else "end of file"
            raise ResumeError(f"{out}: line {i + 1} is {got}, expected {want}; cannot resume")
        pos = nl + 1
        ends.append(pos)
        row_reasons.append(str(row.get("finish_reason")))
    done, rows = 0, 0
    for batch in batches:
        if rows + len(batch) > len(ends):
            break
        rows += len(batch)
        done += 1
    if reasons is not None:
        for r in row_reasons[:rows]:
            reasons[r] = reasons.get(r, 0) + 1
    return done, (ends[rows - 1] if rows else 0)


def run_sampling(
    backend,
    records,
    prompts: Sequence[str],
    add_special_tokens: bool,
    n: int,
    cfg: SamplingConfig,
    out: str | Path,
    meta: dict[str, Any],
    progress: bool = True,
    reasons: dict[str, int] | None = None,
) -> int:
    """Sample ``records`` into ``out`` (resuming if present); returns the number of rows written now.

    ``reasons`` (if given) receives the finish-reason counts of the whole output file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = [r.id for r in records]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate question ids in the data file")
    check_or_write_meta(out, meta)
    batches = backend.plan(len(records), n, cfg)
    reasons = {} if reasons is None else reasons
    done, offset = resume_point(out, batches, keys, reasons)
    with open(out, "r+b" if out.exists() else "wb") as f:
        f.truncate(offset)
    prompt_ids = tokenize_prompts(backend.tokenizer, prompts, add_special_tokens)
    written = 0
    total = sum(len(b) for b in batches)
    done_rows = sum(len(b) for b in batches[:done])
    # a tqdm bar on a terminal, plain lines every 30 s in a job's log file (obe.core.progress)
    bar = Progress(f"sample {out.name}", total, start=done_rows, unit="sample") if progress else None
    with open(out, "ab") as f:
        for batch in batches[done:]:
            comps = backend.run(prompt_ids, keys, batch, cfg)
            payload = b"".join(encode_row(sample_row(keys[q], s, prompts[q], c)) for (q, s), c in zip(batch, comps))
            for c in comps:
                reasons[c.finish_reason] = reasons.get(c.finish_reason, 0) + 1
            f.write(payload)
            f.flush()
            written += len(batch)
            if bar is not None:
                bar.update(done_rows + written, **{k: v for k, v in sorted(reasons.items()) if k != "stop"})
    if bar is not None:
        bar.close()
    return written


def question_ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()


# --------------------------------------------------------------------------- CLI


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for None/False defaults and helps that already state one."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m obe.sampling",
        description=(
            "Sample n completions per question from a causal LM and write one JSONL row per "
            f"sample ({', '.join(ROW_FIELDS)}); answer/outcome_key/correct stay null until "
            "`python -m obe.grade`. Re-running on an existing --out resumes it (same bytes as an "
            "uninterrupted run); resuming with different parameters is refused."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--model", required=True, help="hub name or local HF-format directory (e.g. a training checkpoint)")
    p.add_argument("--data", required=True, help="questions JSONL (obe.core.records.Record rows)")
    p.add_argument("--out", required=True, help="output samples JSONL; sidecar meta at <out>.meta.json")
    p.add_argument("--n", type=int, default=1, help="samples per question")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="generation backend (vllm needs a GPU)")
    p.add_argument("--engine", choices=("auto", "lean", "hf"), default="auto",
                   help="hf backend: lean (obe.engines.fastlm sampling loop; Llama/Qwen2), hf (model.generate), "
                        "auto (lean on CPU when the model is supported). Same distribution, different samples")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    p.add_argument("--max-new-tokens", type=int, default=512, help="completion token budget")
    p.add_argument(
        "--batch-size", type=int, default=None,
        help=f"sequences per generate call (hf) / per engine call (vllm); default {DEFAULT_BATCH_SIZE}",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit", type=int, default=None, help="only the first Q questions")
    p.add_argument("--prompt-template", default="{problem}\n", help="prompt text; {problem} is replaced by the question (default: '{problem}\\n')")
    p.add_argument("--use-chat-template", choices=("auto", "always", "never"), default="auto",
                   help="apply the tokenizer's chat template (auto: when it has one)")
    p.add_argument("--system-prompt", default=None, help="system message (chat template) or prompt prefix")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "auto"), default=None,
                   help=f"model dtype; default {DEFAULT_DTYPE}")
    p.add_argument("--device", default="cpu", help="torch device for the hf backend (cpu, cuda, cuda:1)")
    p.add_argument("--tokenizer", default=None, help="tokenizer name/path if not the model's")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the checkpoint")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm: fraction of GPU memory to use")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm: context length (default: the model's)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress report (default: a bar on a terminal, a line every 30 s in a log file)")
    # Test hook: sleep after each written batch (lets tests kill a run mid-way reliably).
    p.add_argument("--sleep-after-batch", type=float, default=0.0, help=argparse.SUPPRESS)
    add_wandb_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except (ResumeError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    from obe.core.records import read_jsonl

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.n < 1:
        raise ValueError("--n must be >= 1")
    cfg = SamplingConfig(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE[args.backend],
    )
    model_cfg = ModelConfig(
        name_or_path=args.model,
        dtype=args.dtype or DEFAULT_DTYPE[args.backend],
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        prompt_template=args.prompt_template,
        use_chat_template=args.use_chat_template,
        system_prompt=args.system_prompt,
        tokenizer=args.tokenizer,
    )
    records = read_jsonl(args.data)
    if args.limit is not None:
        records = records[: args.limit]
    meta = {
        "format": META_FORMAT,
        "backend": args.backend,
        "model": model_cfg.to_dict(),
        "n": args.n,
        "sampling": cfg.to_dict(),
        "num_questions": len(records),
        "question_ids_sha256": question_ids_digest([r.id for r in records]),
        "data": str(args.data),
    }
    if args.backend == "vllm":
        meta["vllm"] = {"max_model_len": args.max_model_len}
        meta["vllm_engine"] = {"tensor_parallel_size": args.tensor_parallel_size,
                               "gpu_memory_utilization": args.gpu_memory_utilization}
    out = Path(args.out)
    tokenizer = load_tokenizer(model_cfg)
    if args.backend == "hf":
        # the engine decides which samples a seed gives, so it is part of the meta; the
        # model is loaded first to resolve "auto"
        backend = HFBackend(load_model(model_cfg), tokenizer, engine=args.engine)
        meta["engine"] = backend.engine
        check_or_write_meta(out, meta)
    else:
        # Check the meta before loading a (possibly large) model.
        check_or_write_meta(out, meta)
        backend = VLLMBackend.from_config(
            model_cfg,
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
            tensor_parallel_size=args.tensor_parallel_size,
        )
    prompts = build_prompts(tokenizer, [r.problem for r in records], model_cfg)
    if args.sleep_after_batch:
        backend = _Throttled(backend, args.sleep_after_batch)
    reasons: dict[str, int] = {}
    written = run_sampling(
        backend, records, prompts, prompt_adds_special_tokens(tokenizer, model_cfg), args.n, cfg, out, meta,
        progress=not args.no_progress, reasons=reasons,
    )
    print(f"wrote {written} new rows to {out} ({len(records)} questions x {args.n} samples)", file=sys.stderr)
    print("finish reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())), file=sys.stderr)
    unusual = {k: v for k, v in reasons.items() if k not in FINISH_REASONS}
    if unusual:
        print(f"warning: {sum(unusual.values())} samples ended by {sorted(unusual)} (kept and graded as written)",
              file=sys.stderr)
    log_stage_summary(args, stage="sample", name=Path(args.out).stem, config=meta,
                      summary={"questions": len(records), "n": args.n, "rows_written": written,
                               **{f"finish_reason/{k}": v for k, v in sorted(reasons.items())}})
    return 0


class _Throttled:
    """Wraps a backend and sleeps before each batch after the first (test hook)."""

    def __init__(self, inner, seconds: float):
        self.inner, self.seconds, self.calls = inner, seconds, 0
        self.tokenizer = inner.tokenizer

    def plan(self, *a):
        return self.inner.plan(*a)

    def run(self, *a):
        import time

        if self.calls:
            time.sleep(self.seconds)
        self.calls += 1
        return self.inner.run(*a)


if __name__ == "__main__":
    sys.exit(main())
