"""The one record schema shared by every dataset (real or synthetic)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def strict_from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls(**data)`` for a dataclass, refusing keys it does not have: a typo in a saved or
    hand-written file fails with its name and the allowed ones instead of being dropped. The one
    strict constructor behind :meth:`Record.from_dict` and ``ModelConfig.from_dict``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; allowed: {sorted(names)}")
    return cls(**data)


@dataclass(frozen=True)
class Record:
    """One question with its gold answer.

    ``id`` is stable across runs (derived from the source file and line, or the
    source's own id), ``answer`` is the gold final answer as a string (LaTeX allowed).
    """

    id: str
    problem: str
    answer: str
    source: str
    level: str | None = None
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "Record":
        return strict_from_dict(cls, row, "record fields")


def write_jsonl(path: str, records: list[Record]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSONL file; a line that is not JSON
    is a ValueError naming the file and the line. The one JSONL reader of the package."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path} line {lineno}: not valid JSON ({exc.msg})") from None


def read_json_lines(path: str | Path) -> list[Any]:
    """Every value of a JSONL file (see :func:`iter_json_lines`)."""
    return [value for _, value in iter_json_lines(path)]


def read_jsonl(path: str) -> list[Record]:
    return [Record.from_dict(row) for row in read_json_lines(path)]
