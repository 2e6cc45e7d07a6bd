"""The one record schema shared by every dataset (real or synthetic)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(row) - names
        if unknown:
            raise ValueError(f"unknown record fields {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**row)


def write_jsonl(path: str, records: list[Record]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")


def read_jsonl(path: str) -> list[Record]:
    with open(path, encoding="utf-8") as f:
        return [Record.from_dict(json.loads(line)) for line in f if line.strip()]
