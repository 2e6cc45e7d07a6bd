"""Outcome count table ``N(x, a)`` for historical (UCB) exploration.

``N(x, a)`` is how many times, over the whole training history, a sampled completion
for question ``x`` ended with outcome key ``a`` (a string from
``obe.grading.outcome_key``; the no-answer sentinel is just another key). Keys are
opaque strings here. Question ids are coerced to ``str`` (JSON object keys are strings,
so this keeps a checkpoint round trip exact).

The table lives in the trainer only: it is updated from training rollouts, saved with
each checkpoint (:meth:`OutcomeCounts.to_dict` / :meth:`OutcomeCounts.from_dict`) and
persists across epochs. Evaluation code is never given one.

Storage is a dict of dicts of ints with interned strings, so its size is the number of
distinct ``(question, outcome)`` pairs seen (:meth:`OutcomeCounts.num_entries`), bounded
by the number of samples and in practice far smaller (answers repeat).

Typical use in a training step (B questions x n samples)::

    N_Bn = counts.observe_batch(question_ids_B, keys_Bn, before_update=cfg.count_before_update)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

FORMAT = "obe.outcome_counts"
VERSION = 1


def _qid(question_id: Any) -> str:
    return sys.intern(str(question_id))


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"outcome keys must be str, got {type(key).__name__}: {key!r}")
    return sys.intern(key)


class OutcomeCounts:
    """``N(x, a)``: per question id, per outcome key, a count of training samples."""

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: dict[str, dict[str, int]] = {}

    # -- reads -------------------------------------------------------------------------
    def count(self, question_id: Any, key: str) -> int:
        """``N(x, a)``; 0 for a pair never seen."""
        row = self._table.get(str(question_id))
        return row.get(key, 0) if row is not None else 0

    def lookup(self, question_id: Any, keys: Iterable[str]) -> list[int]:
        """``[N(x, a) for a in keys]`` without changing the table."""
        row = self._table.get(str(question_id), {})
        return [row.get(k, 0) for k in keys]

    def lookup_batch(self, question_ids_B: Sequence[Any], keys_Bn: Sequence[Sequence[str]]) -> list[list[int]]:
        """Counts ``[B][n]`` for each question's group of keys, without updating."""
        _check_batch(question_ids_B, keys_Bn)
        return [self.lookup(q, ks) for q, ks in zip(question_ids_B, keys_Bn)]

    def question_counts(self, question_id: Any) -> dict[str, int]:
        """A copy of ``{key: N}`` for one question (empty if never seen)."""
        return dict(self._table.get(str(question_id), {}))

    # -- writes ------------------------------------------------------------------------
    def update(self, question_id: Any, keys: Iterable[str]) -> None:
        """Add one count per key (a key appearing twice in ``keys`` adds 2)."""
        keys = list(keys)
        if not keys:
            return
        row = self._table.setdefault(_qid(question_id), {})
        for k in keys:
            k = _key(k)
            row[k] = row.get(k, 0) + 1

    def observe_batch(
        self,
        question_ids_B: Sequence[Any],
        keys_Bn: Sequence[Sequence[str]],
        *,
        before_update: bool = True,
    ) -> list[list[int]]:
        """Add a whole batch to the table and return its counts ``[B][n]``.

        ``before_update=True`` (default): counts are read before ANY group of the batch
        is added, so a never-seen outcome reads N = 0. ``before_update=False``: read
        after the whole batch is added, so every sample reads N >= 1 (its own count
        included, plus same-outcome siblings). A question appearing twice in the batch is
        treated consistently: both groups see the same table.
        """
        _check_batch(question_ids_B, keys_Bn)
        if before_update:
            out = self.lookup_batch(question_ids_B, keys_Bn)
        for q, ks in zip(question_ids_B, keys_Bn):
            self.update(q, ks)
        if not before_update:
            out = self.lookup_batch(question_ids_B, keys_Bn)
        return out

    # -- size and equality -------------------------------------------------------------
    def num_entries(self) -> int:
        """Number of stored ``(question, outcome)`` pairs: the table's size."""
        return sum(len(row) for row in self._table.values())

    def approx_bytes(self) -> int:
        """Rough memory footprint (dicts + distinct strings + ints), for logging."""
        seen: set[int] = set()
        total = sys.getsizeof(self._table)
        for q, row in self._table.items():
            total += sys.getsizeof(row)
            for s in (q, *row):
                if id(s) not in seen:
                    seen.add(id(s))
                    total += sys.getsizeof(s)
            total += sum(sys.getsizeof(c) for c in row.values() if c > 256)  # small ints are cached
        return total

    def num_questions(self) -> int:
        return len(self._table)

    def total(self) -> int:
        """Sum of all counts = number of samples ever added."""
        return sum(sum(row.values()) for row in self._table.values())

    def __len__(self) -> int:
        return self.num_entries()

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        """``(question_id, key, N)`` triples."""
        for q, row in self._table.items():
            for k, c in row.items():
                yield q, k, c

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OutcomeCounts):
            return NotImplemented
        return self._table == other._table

    def __repr__(self) -> str:
        return f"OutcomeCounts(questions={self.num_questions()}, entries={self.num_entries()}, total={self.total()})"

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for checkpoints): ``{"format", "version", "counts": {q: {a: N}}}``."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "counts": {q: dict(row) for q, row in self._table.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OutcomeCounts":
        """Inverse of :meth:`to_dict`; validates the format and the counts."""
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(
                f"not an outcome-count table (format={data.get('format')!r}, version={data.get('version')!r}); "
                f"expected format={FORMAT!r}, version={VERSION}"
            )
        out = cls()
        for q, row in data["counts"].items():
            if not row:
                continue
            clean: dict[str, int] = {}
            for k, c in row.items():
                if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                    raise ValueError(f"count for ({q!r}, {k!r}) must be a positive int, got {c!r}")
                clean[_key(k)] = c
            out._table[_qid(q)] = clean
        return out


def _check_batch(question_ids_B: Sequence[Any], keys_Bn: Sequence[Sequence[str]]) -> None:
    if len(question_ids_B) != len(keys_Bn):
        raise ValueError(f"{len(question_ids_B)} question ids but {len(keys_Bn)} groups of keys")
    for ks in keys_Bn:
        if isinstance(ks, str):
            raise TypeError("keys_Bn must be a sequence of groups (lists of keys), not of strings")
