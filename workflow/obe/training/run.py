"""One training run, whatever engine trains it.

:class:`TrainingRun` is the run's lifecycle, written once for every engine: the run folder (the
resume point and its verification, ``config.json``, old runs set aside, never deleted), the
JSONL files (``metrics.jsonl``, ``rollouts.jsonl``), the tracker (W&B, with the completions
table), signals (a stop that every rank agrees on), progress lines and the callbacks
(:mod:`obe.training.callbacks`). It is the only writer of those files and of W&B, and the only
source of a checkpoint's state (:meth:`TrainingRun.checkpoint_state`). It owns the count table
N(x, a) and the solved set that the engine's exploration term updates.

An engine trains; once per step it hands the run a :class:`StepRecord`. What an engine must
provide (obe.train's own loop and the TRL backend do; a third engine is this list):

1. a :class:`Distributed` (rank, world size and four collectives; the default is one process)
   and a :class:`obe.core.checkpoint.Layout` (how its checkpoint folders are named and which
   file of each holds the run's state);
2. its start: the model of ``run.resume_from`` (None: ``cfg.model``) with its own saved state
   from ``run.state`` (e.g. obe.train's data position); ``run.step`` steps are done;
3. per step: exploration through ``run.counts`` (:func:`obe.rl.bonuses.apply_exploration`),
   then ``run.record(StepRecord(...))``, then ``decision = run.end_of_step(step, model)``;
   it saves a snapshot (``run.snapshot_dir(step)``) when ``decision.snapshot``, and a
   checkpoint when ``decision.checkpoint``: its own files, the state file holding
   ``run.checkpoint_state(...)`` (every rank calls it), then ``run.seal(folder)`` unless its
   save already wrote the manifest; when ``decision.stop`` it calls ``run.stopped()``;
4. at the end, the final model in ``run.final_dir``, then ``run.summary()``.

Multi-process runs: every method above is called on every rank, in the same order (some are
collectives); the main rank writes the files. Each rank's count table must be identical
(every rank updates it with the whole gathered batch): each checkpoint records the sha256 of
every rank's table (``counts_digest_by_rank``) and a difference stops the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from obe.core import checkpoint as ckpt
from obe.core import tracking
from obe.core.progress import Progress
from obe.core.records import read_jsonl
from obe.grading import GradeResult
from obe.rl.advantages import CORRECT_THRESHOLD
from obe.rl.bonuses import StepAdvantages
from obe.rl.counts import OutcomeCounts
from obe.tasks.synthetic import rollout_metrics as task_rollout_metrics
from obe.training.callbacks import StepContext, call_all, load_callbacks
from obe.training.config import TrainConfig
from obe.training.metrics import (COMPLETION_COLUMNS, METRICS, cumulative_metrics, distinct_answers_per_question,
                                  group_metrics)
from obe.training.numerics import peak_memory_gb
from obe.training.run_dir import data_digest, model_identity, resume_point

STOPPED_EXIT_CODE = 143  # 128 + SIGTERM: what a job stopped by its scheduler is expected to return


def _one(obj: Any) -> list[Any]:
    return [obj]


@dataclass(frozen=True)
class Distributed:
    """The processes of one run: this one's ``rank``, ``world_size``, and the collectives the
    run needs (each called on every rank): ``any_rank(flag)`` is True on every rank when it is
    True on one, ``gather(obj)`` gives every rank the list of all ranks' objects,
    ``broadcast(obj)`` rank 0's object, ``barrier()`` waits for all."""

    rank: int = 0
    world_size: int = 1
    any_rank: Callable[[bool], bool] = bool
    gather: Callable[[Any], list] = _one
    broadcast: Callable[[Any], Any] = lambda obj: obj  # noqa: E731
    barrier: Callable[[], None] = lambda: None  # noqa: E731

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class LossStats:
    """The update's numbers (None where the engine does not have one): means over the step's
    ``mu`` updates, entropies those of the first."""

    loss: Optional[float]
    grad_norm: Optional[float]
    kl: Optional[float] = None
    clip_ratio: Optional[float] = None
    clip_ratio_low: Optional[float] = None
    clip_ratio_high: Optional[float] = None
    entropy: Optional[float] = None
    entropy_correct: Optional[float] = None
    entropy_incorrect: Optional[float] = None


@dataclass
class StepRecord:
    """What one step produced, for the whole batch (every rank holds all of it). Samples are
    question-major: sample ``s`` answers question ``question_ids[s // n]``."""

    step: int
    epoch: float  # questions consumed / training-set size
    lr: float
    question_ids: Sequence[str]  # [B]
    texts: Sequence[str]  # [S] completions
    graded: Sequence[GradeResult]  # [S]
    rewards_Bn: torch.Tensor
    exploration: StepAdvantages  # bonus_Bn, sample_Bn of the step
    num_tokens: Sequence[int]  # [S] completion tokens (EOS included)
    truncated: Sequence[bool]  # [S] no EOS within the budget
    loss: LossStats
    started: float  # time.perf_counter() when the step began
    time_generate: float
    time_grade: float
    time_update: float


@dataclass(frozen=True)
class StepDecision:
    """What the engine does after a step: all ranks get the same answer."""

    snapshot: bool  # save snapshots/step_N (an evaluated step)
    checkpoint: bool  # save a resumable checkpoint
    stop: bool  # a signal came: checkpoint this step, then run.stopped()


class GradingFailed(RuntimeError):
    """More samples raised inside the grader than ``max_grading_error_frac`` allows."""


class TrainingRun:
    """The run folder ``cfg.out`` and everything written there but the engine's model files;
    a context manager (see the module docstring for the protocol)."""

    def __init__(self, cfg: TrainConfig, *, engine: str, layout: ckpt.Layout = ckpt.OBE_LAYOUT,
                 dist: Distributed = Distributed(), engine_config: Optional[dict[str, Any]] = None,
                 device: Optional[torch.device] = None):
        self.cfg, self.engine, self.layout, self.dist = cfg, engine, layout, dist
        self.engine_config = dict(engine_config or {})  # engine-only settings, saved and compared on resume
        self.device = device if device is not None else torch.device(cfg.device)
        self.out = Path(cfg.out)
        self.checkpoints_dir = self.out / "checkpoints"
        self.final_dir = self.out / "final"
        self.metrics_path, self.rollouts_path = self.out / "metrics.jsonl", self.out / "rollouts.jsonl"
        self.records = read_jsonl(cfg.train_data)
        if not self.records:
            raise SystemExit(f"{cfg.train_data}: no training questions")
        self.problem_of = {str(r.id): r.problem for r in self.records}
        self.counts, self.solved = OutcomeCounts(), set()
        self.state: dict[str, Any] = {}
        self.resume_from: Optional[Path] = None
        self.step = 0
        self._signal: Optional[int] = None
        self._graded = self._grading_errors = 0
        self._metrics_f = self._rollouts_f = None
        self._tracker: Any = tracking.NullTracker()
        self._progress: Optional[Progress] = None
        self._old_handlers: dict[int, Any] = {}
        self.callbacks: list[Any] = []

    # -- setup ----------------------------------------------------------------------------

    def __enter__(self) -> "TrainingRun":
        cfg, out, main = self.cfg, self.out, self.dist.is_main
        self.callbacks = load_callbacks(cfg.callbacks)
        self.digest = data_digest(self.records)
        # what the model is, not where it lives (a moved project resumes); read once (16 GB at 8B)
        self.model_id = self.dist.broadcast(model_identity(cfg.model) if main else None)
        last = None
        if main:
            out.mkdir(parents=True, exist_ok=True)
            for folder in (self.checkpoints_dir, out, out / "snapshots"):
                ckpt.clean_partial(folder)
            last = resume_point(cfg, out, self.digest, self.model_id, self.layout, self.engine_config, say=self.say)
        last = self.dist.broadcast(str(last) if last is not None else None)  # one decision for every rank
        self.resume_from = Path(last) if last is not None else None
        if self.resume_from is not None:
            self.state = ckpt.read_state(self.resume_from, self.layout)
            self.step = int(self.state["step"])
            self.counts = OutcomeCounts.from_dict(self.state["counts"])
            self.solved = set(self.state["solved"])
            self.say(f"resuming from {self.resume_from} (step {self.step})")
        self._distinct_q = distinct_answers_per_question(self.counts, dict.fromkeys(q for q, _, _ in self.counts))
        if main:  # the files go back to the checkpoint's lengths: the resumed run appends what it redoes
            ckpt.truncate_file(self.metrics_path, self.state.get("metrics_bytes", 0))
            ckpt.truncate_file(self.rollouts_path, self.state.get("rollouts_bytes", 0))
            (out / "config.json").write_text(json.dumps(self.saved_config(), indent=2) + "\n")
            self._metrics_f, self._rollouts_f = open(self.metrics_path, "a"), open(self.rollouts_path, "a")
            # one W&B run per training run: a resume continues it (re-logging the kept rows), a restart makes a new one
            resumed = self.resume_from is not None
            self._tracker = tracking.start_run(
                stage="train", name=tracking.run_name(cfg.method, cfg.seed), config=self.saved_config(),
                experiment=cfg.experiment, wandb_dir=cfg.wandb_dir,
                tags=[cfg.method] if self.engine == "obe" else [cfg.method, self.engine],
                run_id=tracking.resumable_run_id(out, resume=resumed))
            if resumed:
                tracking.relog_rows(self._tracker, self.metrics_path)
            label = f"train {tracking.run_name(cfg.method, cfg.seed)}" + (f" ({self.engine})" if self.engine != "obe" else "")
            self._progress = Progress(label, cfg.steps, start=self.step)
        self.dist.barrier()

        def on_signal(signum, frame):  # acted on between steps, by every rank together (end_of_step)
            self._signal = signum
        self._old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.close()
        self._tracker.finish()
        for f in (self._metrics_f, self._rollouts_f):
            if f is not None:
                f.close()
        for s, handler in self._old_handlers.items():
            signal.signal(s, handler)

    def say(self, msg: str) -> None:
        """A line of the job log (main rank only)."""
        if self.dist.is_main:
            print(f"{self._log_name()}: {msg}", file=sys.stderr, flush=True)

    def _log_name(self) -> str:
        return "obe.train" if self.engine == "obe" else f"obe.engines.{self.engine}_backend"

    def saved_config(self) -> dict[str, Any]:
        """config.json: the resolved config, with the engine's own settings beside it."""
        extra = {} if self.engine == "obe" else {"backend": self.engine, self.engine: self.engine_config}
        return dict(self.cfg.to_dict(), **extra)

    # -- per step -------------------------------------------------------------------------

    def record(self, rec: StepRecord) -> None:
        """Log one step: the metrics row, one rollouts row per sample, W&B (and the completions
        table), progress; then stop the run (GradingFailed) when grading errors pass the limit."""
        n = self.cfg.n
        B = len(rec.question_ids)
        keys_Bn = [[g.outcome_key for g in rec.graded[b * n:(b + 1) * n]] for b in range(B)]
        for q, ok in zip(rec.question_ids, (rec.rewards_Bn.amax(dim=1) > CORRECT_THRESHOLD).tolist()):
            if ok:
                self.solved.add(str(q))
        self._distinct_q.update(distinct_answers_per_question(self.counts, set(rec.question_ids)))
        errors = [s for s, g in enumerate(rec.graded) if g.status == "error"]
        self._graded += len(rec.graded)
        self._grading_errors += len(errors)
        self.step = rec.step
        if self.dist.is_main:
            self._write(rec, keys_Bn, errors)
        if errors and self._grading_errors > self.cfg.max_grading_error_frac * self._graded:
            s = errors[0]
            raise GradingFailed(
                f"step {rec.step}: {self._grading_errors} of {self._graded} samples so far raised inside the grader "
                f"(more than max_grading_error_frac = {self.cfg.max_grading_error_frac}); the first of this step: question "
                f"{rec.question_ids[s // n]}, error {rec.graded[s].error}, completion {rec.texts[s][:300]!r}")

    def _write(self, rec: StepRecord, keys_Bn: list[list[str]], errors: list[int]) -> None:
        cfg, n = self.cfg, self.cfg.n
        qid_of = [str(rec.question_ids[s // n]) for s in range(len(rec.texts))]
        for s in errors:  # each one in the job log, with the input that raised
            g = rec.graded[s]
            self.say(f"grading error at step {rec.step}, question {qid_of[s]}: {g.error}; completion {rec.texts[s][:300]!r}")
        n_tok = torch.tensor(list(rec.num_tokens), dtype=torch.float64)
        ls = rec.loss
        row = {
            "step": rec.step, "epoch": rec.epoch, "loss": ls.loss, "kl": ls.kl,
            "entropy": ls.entropy, "entropy/correct": ls.entropy_correct, "entropy/incorrect": ls.entropy_incorrect,
            "clip_ratio": ls.clip_ratio, "clip_ratio/low": ls.clip_ratio_low, "clip_ratio/high": ls.clip_ratio_high,
            "grad_norm": ls.grad_norm, "lr": rec.lr,
            **group_metrics(rec.rewards_Bn, keys_Bn, rec.exploration.bonus_Bn, rec.exploration.sample_Bn, cfg.std),
            **cumulative_metrics(self.counts, self.solved, self._distinct_q),
            "grading/errors": len(errors),
            "completions/mean_length": float(n_tok.mean()), "completions/max_length": int(n_tok.max()),
            "completions/min_length": int(n_tok.min()),
            "completions/clipped_ratio": sum(map(bool, rec.truncated)) / len(rec.truncated),
            "num_tokens": int(n_tok.sum()),
        }
        # the task's own rollout metrics (the synthetic task: its shared convention's reading rate)
        row.update(task_rollout_metrics([self.problem_of[q] for q in qid_of], list(rec.texts)))
        t_step = time.perf_counter() - rec.started
        row.update({"perf/tokens_per_sec": row["num_tokens"] / t_step if t_step > 0 else None,
                    "perf/peak_memory_gb": peak_memory_gb(self.device), "time/generate": rec.time_generate,
                    "time/grade": rec.time_grade, "time/update": rec.time_update, "time/step": t_step})
        if set(row) != set(METRICS):
            raise RuntimeError(f"a metrics row must have exactly the keys of METRICS: missing "
                               f"{sorted(set(METRICS) - set(row))}, unknown {sorted(set(row) - set(METRICS))}")
        self._metrics_f.write(json.dumps(row) + "\n")
        self._metrics_f.flush()
        for s, g in enumerate(rec.graded):
            self._rollouts_f.write(json.dumps({"question_id": qid_of[s], "step": rec.step, "sample_index": s % n,
                                               "outcome_key": g.outcome_key, "correct": g.correct,
                                               "num_tokens": int(rec.num_tokens[s])}) + "\n")
        self._rollouts_f.flush()
        self._tracker.log({k: v for k, v in row.items() if v is not None}, step=rec.step)
        if cfg.log_completions_every and (rec.step == 1 or rec.step % cfg.log_completions_every == 0):
            bonus_S = rec.exploration.bonus_Bn.reshape(-1).tolist()
            self._tracker.log_table("completions", COMPLETION_COLUMNS, [
                [rec.step, qid_of[s], self.problem_of[qid_of[s]], rec.texts[s], g.answer, g.correct, bonus_S[s],
                 self.counts.count(qid_of[s], g.outcome_key)] for s, g in enumerate(rec.graded)], step=rec.step)
        self._progress.update(rec.step, reward=row["reward"], distinct=row["answers/distinct_per_group"],
                              tokens_per_s=round(row["perf/tokens_per_sec"] or 0))

    def end_of_step(self, step: int, model: Any) -> StepDecision:
        """After ``step``'s record: the callbacks, then the step's saves and whether to stop,
        agreed by every rank (a signal on any rank stops all of them at this step)."""
        ctx = StepContext(step=step, config=self.cfg, resumed=self.resume_from is not None, rank=self.dist.rank,
                          world_size=self.dist.world_size, model=model, _signal=lambda: self._signal)
        call_all(self.callbacks, "on_step_end", ctx)
        stop = self.dist.any_rank(self._signal is not None) and step < self.cfg.steps
        return StepDecision(snapshot=step in self.cfg.save_steps,
                            checkpoint=stop or step == self.cfg.steps or step % self.cfg.checkpoint_every == 0,
                            stop=stop)

    def stopped(self) -> None:
        """After the stop's checkpoint: exit with 143 (every rank)."""
        self.say(f"signal {self._signal or 'on another rank'} received; checkpoint saved at step {self.step}, exiting")
        raise SystemExit(STOPPED_EXIT_CODE)

    # -- saving ---------------------------------------------------------------------------

    def snapshot_dir(self, step: int) -> Path:
        return self.out / "snapshots" / f"step_{step}"

    def checkpoint_state(self, step: int, **engine_state: Any) -> dict[str, Any]:
        """The run's part of a checkpoint at ``step`` (every rank calls it; the main rank's answer
        is the one to write): the count table and solved set, the JSONL files' lengths (flushed
        to disk), the config and what the run was started from, each rank's count-table digest
        (they must agree), and ``engine_state``."""
        table = json.dumps(self.counts.to_dict(), sort_keys=True)
        digests = self.dist.gather(hashlib.sha256(table.encode()).hexdigest())
        if len(set(digests)) != 1:
            raise RuntimeError(f"step {step}: the ranks' count tables differ (sha256 by rank: {digests}); the run "
                               f"stops before saving a checkpoint that would resume them differently")
        for f in (self._metrics_f, self._rollouts_f):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
        state = {"step": int(step), "counts": self.counts.to_dict(), "solved": sorted(self.solved),
                 "config": self.cfg.to_dict(), "data_digest": self.digest, "model_identity": self.model_id,
                 "counts_digest_by_rank": digests, **engine_state}
        if self.engine_config:
            state["engine_settings"] = self.engine_config
        if self.dist.is_main:
            state.update(metrics_bytes=self.metrics_path.stat().st_size, rollouts_bytes=self.rollouts_path.stat().st_size)
        return state

    def seal(self, folder: Path) -> None:
        """After every rank wrote its files of a checkpoint: the manifest, written last (a folder
        without one is an interrupted save); every rank calls it."""
        self.dist.barrier()
        if self.dist.is_main:
            ckpt.write_manifest(folder)
        self.dist.barrier()

    def summary(self) -> dict[str, Any]:
        """The end of a finished run (after the engine wrote ``final_dir``)."""
        summary = {"steps": self.step, "questions_solved": len(self.solved), "final_dir": str(self.final_dir)}
        self._tracker.summary(summary)
        return summary
