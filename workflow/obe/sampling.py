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

The generation itself (the ``hf`` and ``vllm`` backends, EOS ids, seeds) is
``obe.engines.generation``; this module is the stage around it: row schema, batching into
the output file, resume and the CLI.

Resume guarantees. Both backends: a resumed output holds every (question, sample) row exactly
once, in order, made with the recorded parameters (rows are checked by identity, finished
batches are kept and the rest is sampled again). ``hf``: the resumed file is also byte-identical
to an uninterrupted run on the same device and thread count. ``vllm``: not bitwise reproducible
(batching and kernels vary between runs unless vLLM's batch-invariant mode is on), so resampled
batches are new draws from the same distribution; ``--tensor-parallel-size`` and
``--gpu-memory-utilization`` may change on resume, ``--max-model-len`` may not.

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
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from obe.core.files import ResumeError
from obe.core.progress import Progress
from obe.engines.generation import (DEFAULT_BATCH_SIZE, DEFAULT_DTYPE, Completion, HFBackend, Row, SamplingConfig,
                                   VLLMBackend, tokenize_prompts)
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
    bar = Progress(f"sample {shown_name(out)}", total, start=done_rows, unit="sample") if progress else None
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


def output_path(out: Path) -> Path:
    """The output a message names: the pipeline samples into ``<output>.part`` (which a killed job
    resumes) and moves it into place when the job succeeds."""
    return out.with_suffix("") if out.suffix == ".part" else out


def shown_name(out: Path) -> str:
    """``run/stepN/dataset.jsonl``: the output's last three path parts, for progress lines."""
    return "/".join(output_path(out).parts[-3:])


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
    p.add_argument("--revision", default=None, help="hub revision (commit hash) of --model and its tokenizer")
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
    """Questions -> settings and meta -> backend -> n samples per question appended to OUT -> summary."""
    from obe.core.records import read_jsonl

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.n < 1:
        raise ValueError("--n must be >= 1")
    cfg, model_cfg = _configs(args)
    records = read_jsonl(args.data)
    if args.limit is not None:
        records = records[: args.limit]
    meta = _run_meta(args, cfg, model_cfg, records)
    out = Path(args.out)
    tokenizer = load_tokenizer(model_cfg)
    backend = _open_backend(args, model_cfg, tokenizer, meta, out)
    prompts = build_prompts(tokenizer, [r.problem for r in records], model_cfg)
    if args.sleep_after_batch:
        backend = _Throttled(backend, args.sleep_after_batch)
    reasons: dict[str, int] = {}
    written = run_sampling(
        backend, records, prompts, prompt_adds_special_tokens(tokenizer, model_cfg), args.n, cfg, out, meta,
        progress=not args.no_progress, reasons=reasons,
    )
    _print_summary(written, out, len(records), args.n, reasons)
    log_stage_summary(args, stage="sample", name=Path(args.out).stem, config=meta,
                      summary={"questions": len(records), "n": args.n, "rows_written": written,
                               **{f"finish_reason/{k}": v for k, v in sorted(reasons.items())}})
    return 0


def _configs(args: argparse.Namespace) -> tuple[SamplingConfig, ModelConfig]:
    """The sampling and model settings of the command line, backend defaults filled in."""
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
        revision=args.revision,
    )
    return cfg, model_cfg


def _run_meta(args: argparse.Namespace, cfg: SamplingConfig, model_cfg: ModelConfig,
              records: Sequence[Any]) -> dict[str, Any]:
    """What a resumed run must share with the one that wrote ``OUT``'s rows (the ``.meta.json``);
    the hf backend adds its resolved ``engine`` once the model is loaded."""
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
    return meta


def _open_backend(args: argparse.Namespace, model_cfg: ModelConfig, tokenizer: Any, meta: dict[str, Any], out: Path):
    """The generation backend, with ``meta`` checked against (or written beside) ``out``."""
    if args.backend == "hf":
        # the engine decides which samples a seed gives, so it is part of the meta; the
        # model is loaded first to resolve "auto"
        backend = HFBackend(load_model(model_cfg), tokenizer, engine=args.engine)
        meta["engine"] = backend.engine
        check_or_write_meta(out, meta)
        return backend
    # Check the meta before loading a (possibly large) model.
    check_or_write_meta(out, meta)
    return VLLMBackend.from_config(
        model_cfg,
        seed=args.seed,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        tensor_parallel_size=args.tensor_parallel_size,
    )


def _print_summary(written: int, out: Path, questions: int, n: int, reasons: dict[str, int]) -> None:
    """Rows written and finish reasons to stderr; reasons other than FINISH_REASONS are warned about."""
    where = output_path(out)
    staged = f"; written as {out.name} until the job moves it into place" if where != out else ""
    print(f"sampled {written} new rows of {where} ({questions} questions x {n} samples{staged})", file=sys.stderr)
    print("finish reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())), file=sys.stderr)
    unusual = {k: v for k, v in reasons.items() if k not in FINISH_REASONS}
    if unusual:
        print(f"warning: {sum(unusual.values())} samples ended by {sorted(unusual)} (kept and graded as written)",
              file=sys.stderr)


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
