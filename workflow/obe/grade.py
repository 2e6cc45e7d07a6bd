"""Grading stage: fill answer / outcome_key / correct of sample rows with ``obe.grading``.

``python -m obe.grade --samples samples.jsonl --data X.jsonl --out graded.jsonl``

Each sample row (schema of :mod:`obe.sampling`) is matched to its gold answer by
``question_id`` -> ``Record.id``; ``obe.grading.grade(text, gold)`` fills ``answer``,
``outcome_key`` and ``correct``, and ``grade_status`` is added. Rows keep their order and
all other fields. Kept separate from sampling so a grader change never reruns sampling.
The output is written to a temporary file and renamed into place, so a failed or killed
run never leaves a partial ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from obe.core.progress import Progress
from obe.core.records import read_json_lines
from obe.core.tracking import add_wandb_args, log_stage_summary
from typing import Any, Callable, Iterable, Iterator, Sequence


class GradeStageError(ValueError):
    pass


def _default_grade_fn() -> Callable[[str, str], Any]:
    from obe.grading import grade

    return grade


def grade_row(row: dict[str, Any], gold: str, grade_fn: Callable[[str, str], Any]) -> dict[str, Any]:
    """A copy of ``row`` with answer / outcome_key / correct / grade_status filled."""
    result = grade_fn(row["text"], gold)
    out = dict(row)
    out["answer"] = result.answer
    out["outcome_key"] = result.outcome_key
    out["correct"] = bool(result.correct)
    out["grade_status"] = result.status
    return out


def grade_rows(
    rows: Iterable[dict[str, Any]],
    gold_by_id: dict[str, str],
    grade_fn: Callable[[str, str], Any] | None = None,
    source: str = "samples",
) -> Iterator[dict[str, Any]]:
    """Grade sample rows lazily; raises :class:`GradeStageError` for an unknown question id."""
    grade_fn = grade_fn or _default_grade_fn()
    for i, row in enumerate(rows, start=1):
        qid = row.get("question_id")
        if qid not in gold_by_id:
            raise GradeStageError(
                f"{source}: row {i} has question_id {qid!r}, which is not in the data file "
                f"({len(gold_by_id)} questions); wrong --data?"
            )
        if not isinstance(row.get("text"), str):
            raise GradeStageError(f"{source}: row {i} has no 'text' string")
        yield grade_row(row, gold_by_id[qid], grade_fn)


def read_sample_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if not line.endswith("\n"):
                raise GradeStageError(f"{path}: line {lineno} is truncated (unfinished sampling run?)")
            try:
                row = json.loads(line)
            except ValueError:
                raise GradeStageError(f"{path}: line {lineno} is not valid JSON") from None
            if not isinstance(row, dict):
                raise GradeStageError(f"{path}: line {lineno} is not a JSON object")
            yield row


def grade_file(
    samples: str | Path,
    data: str | Path,
    out: str | Path,
    grade_fn: Callable[[str, str], Any] | None = None,
    show_progress: bool = False,
) -> int:
    """Grade ``samples`` against ``data`` into ``out`` (atomic); returns the number of rows.
    ``show_progress``: rows done, rate and ETA on stderr (obe.core.progress)."""
    from obe.core.records import read_jsonl

    gold = {r.id: r.answer for r in read_jsonl(str(data))}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    with open(samples, "rb") as f:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    progress = Progress(f"grade {'/'.join(Path(samples).parts[-3:])}", total, unit="row") if show_progress else None
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in grade_rows(read_sample_rows(samples), gold, grade_fn, source=str(samples)):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
                if progress is not None:
                    progress.update(n)
        os.replace(tmp, out)
    finally:
        if progress is not None:
            progress.close()
        if tmp.exists():
            tmp.unlink()
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m obe.grade",
        description=(
            "Fill answer / outcome_key / correct (and grade_status) of sample rows written by "
            "`python -m obe.sampling`, grading each text against the gold answer of its question "
            "(question_id -> Record.id in --data) with obe.grading.grade."
        ),
    )
    p.add_argument("--samples", required=True, help="samples JSONL from obe.sampling")
    p.add_argument("--data", required=True, help="questions JSONL with gold answers (obe.core.records.Record rows)")
    p.add_argument("--out", required=True, help="graded JSONL to write (replaced atomically)")
    add_wandb_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        n = grade_file(args.samples, args.data, args.out, show_progress=True)
    except (GradeStageError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"graded {n} rows -> {args.out}", file=sys.stderr)
    if args.experiment:
        rows = read_json_lines(args.out)
        summary = {"rows": n, "accuracy": sum(bool(r["correct"]) for r in rows) / max(1, n),
                   "frac_no_answer": sum(r.get("grade_status") == "no_answer" for r in rows) / max(1, n)}
        log_stage_summary(args, stage="grade", name=Path(args.out).stem, config=vars(args), summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
