"""Where real math questions come from: one pure converter per source, raw row -> ``Record``.

Training and every evaluation must see the same problem text and the same gold answer, so each
source's quirks (MATH's last ``\\boxed{}``, GSM8K's ``####``, AMC's float answers, OlympiadBench's
``$``-wrapped lists) are handled exactly once, here, by a small pure converter
``(raw row, Where) -> Record | Problem``. A converter never raises on a bad row: it returns a
:class:`Problem` naming the file and line, and ``obe.data`` (reading files, exclusion, manifests,
the CLI) decides whether that drops the row or fails the run.

``SOURCES`` maps each ``--source`` name of ``python -m obe.data`` to its converter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from obe.core.records import Record
from obe.grading.latex import last_boxed


@dataclass(frozen=True)
class Where:
    """Where a raw row came from: ``file`` (path or hub name) and 1-based ``line`` for messages,
    ``tag`` (e.g. ``math/train``) for ids derived from file and line."""

    file: str
    line: int
    tag: str

    def problem(self, reason: str) -> "Problem":
        return Problem(self.file, self.line, reason)


@dataclass(frozen=True)
class Problem:
    """A bad row, named so that a person can open the file at that line."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


Converter = Callable[[dict[str, Any], Where], "Record | Problem"]

# ----------------------------------------------------------------------------- answer parsing

_BRACELESS_BOX_RE = re.compile(r"\\boxed\s+([^\s{}$\\])")
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")


def boxed_answer(solution: str) -> str | None:
    """Last ``\\boxed{}`` content; falls back to TeX's brace-less ``\\boxed 2`` (two MATH train
    solutions use it), whose argument is the single next character."""
    boxed = last_boxed(solution)
    if boxed is not None:
        return boxed
    found = _BRACELESS_BOX_RE.findall(solution)
    return found[-1] if found else None


def gsm8k_final(solution: str) -> str | None:
    """Text after the last ``####`` with thousands commas removed (``3,890`` -> ``3890``)."""
    if "####" not in solution:
        return None
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def number_text(value: Any) -> str | None:
    """A JSON number or string as answer text; integer-valued floats lose ``.0`` (AMC ``27.0``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    return None


def strip_dollars(text: str) -> str:
    """Drop unescaped ``$`` math delimiters (``$69$,$84$`` -> ``69,84``); ``\\$`` is kept."""
    return _UNESCAPED_DOLLAR_RE.sub("", text).strip()


def normalize_problem(text: str) -> str:
    """Whitespace-collapsed, lowercased text: the key for overlap checks between splits."""
    return " ".join(text.split()).lower()


# ----------------------------------------------------------------------------- converters


def _build(
    source: str,
    row: dict[str, Any],
    where: Where,
    *,
    problem_key: str,
    answer: str | None,
    answer_missing: str,
    id_key: str | None = None,
    level: str | None = None,
    subject_key: str | None = None,
) -> Record | Problem:
    """Validate the common fields and assemble a Record; the first failing check is the reason."""
    problem = row.get(problem_key)
    if problem is None:
        return where.problem(f"missing problem field '{problem_key}'")
    if not isinstance(problem, str):
        return where.problem(f"problem field '{problem_key}' is {type(problem).__name__}, not str")
    if not problem.strip():
        return where.problem("empty problem")
    if answer is None:
        return where.problem(answer_missing)
    if not answer.strip():
        return where.problem("empty answer")
    own_id = row.get(id_key) if id_key else None
    rid = f"{source}:{own_id}" if own_id is not None else f"{where.tag}:{where.line}"
    subject = row.get(subject_key) if subject_key else None
    return Record(
        id=rid,
        problem=problem.strip(),
        answer=answer.strip(),
        source=source,
        level=level,
        subject=subject if isinstance(subject, str) else None,
    )


def _str_field(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) else None


def math_level(value: Any) -> str | None:
    """``Level 1`` .. ``Level 5`` from MATH's text (``"Level 3"``) or PRM800K's int (``3``);
    anything else (two MATH train problems say ``"Level ?"``) is an unknown level, None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"Level {value}"
    return value if isinstance(value, str) and re.fullmatch(r"Level [1-5]", value) else None


def convert_math(row: dict[str, Any], where: Where) -> Record | Problem:
    """MATH: gold is the last box of ``solution``; id is the ``unique_id`` (from ``*_paths.txt``
    for the original release's files). Rows in the original release's columns (``type``, level
    ``"Level 3"``) and in PRM800K's (``subject``, level ``3``, as hub copies of the 12k/500
    split publish them) give the same record; PRM800K's own ``answer`` is not used, so both
    read the gold the same way."""
    solution = _str_field(row, "solution")
    answer = boxed_answer(solution) if solution is not None else None
    why = "missing 'solution'" if solution is None else "no \\boxed{} answer in 'solution'"
    return _build("math", row, where, problem_key="problem", answer=answer, answer_missing=why,
                  id_key="unique_id", level=math_level(row.get("level")),
                  subject_key="type" if "type" in row else "subject")


def convert_math500(row: dict[str, Any], where: Where) -> Record | Problem:
    """MATH-500: explicit ``answer``; int level 3 becomes ``Level 3`` as in MATH."""
    return _build("math500", row, where, problem_key="problem", answer=_str_field(row, "answer"),
                  answer_missing="missing or non-string 'answer'", id_key="unique_id",
                  level=math_level(row.get("level")), subject_key="subject")


def convert_gsm8k(row: dict[str, Any], where: Where) -> Record | Problem:
    """GSM8K: prompt in ``question``; gold after ``####``; no own id, so ``gsm8k/train:812``."""
    solution = _str_field(row, "answer")
    answer = gsm8k_final(solution) if solution is not None else None
    why = "missing or non-string 'answer'" if solution is None else "no '####' final answer"
    return _build("gsm8k", row, where, problem_key="question", answer=answer, answer_missing=why)


def _numeric_answer_converter(source: str, id_key: str) -> Converter:
    """AIME/AMC rows share a shape: ``problem``, an own id, and a number-like ``answer``."""

    def convert(row: dict[str, Any], where: Where) -> Record | Problem:
        return _build(source, row, where, problem_key="problem",
                      answer=number_text(row.get("answer")),
                      answer_missing="missing or non-numeric 'answer'", id_key=id_key)

    convert.__name__ = f"convert_{source}"
    convert.__doc__ = f"{source}: ``problem``, gold ``answer`` as text, id from ``{id_key}``."
    return convert


convert_aime24 = _numeric_answer_converter("aime24", "id")
convert_aime25 = _numeric_answer_converter("aime25", "problem_idx")
convert_amc23 = _numeric_answer_converter("amc23", "id")


def convert_minerva_math(row: dict[str, Any], where: Where) -> Record | Problem:
    """Minerva Math: gold is the last box of ``solution``; the course name is the subject."""
    solution = _str_field(row, "solution")
    answer = boxed_answer(solution) if solution is not None else None
    why = "missing 'solution'" if solution is None else "no \\boxed{} answer in 'solution'"
    return _build("minerva_math", row, where, problem_key="problem", answer=answer,
                  answer_missing=why, id_key="idx", subject_key="type")


def convert_olympiadbench(row: dict[str, Any], where: Where) -> Record | Problem:
    """OlympiadBench: prompt in ``question``; gold is a one-element list, ``$`` stripped."""
    final = row.get("final_answer")
    if isinstance(final, list) and len(final) != 1:
        return where.problem(f"expected a one-element 'final_answer' list, got {len(final)}")
    answer = strip_dollars(final[0]) if isinstance(final, list) and isinstance(final[0], str) else None
    return _build("olympiadbench", row, where, problem_key="question", answer=answer,
                  answer_missing="missing or non-string 'final_answer' element", id_key="id",
                  subject_key="subfield")


def convert_record(row: dict[str, Any], where: Where) -> Record | Problem:
    """Rows already in Record form (synthetic tasks, or a prepared file read back): id kept."""
    try:
        record = Record.from_dict(row)
    except (TypeError, ValueError) as err:
        return where.problem(f"not a record: {err}")
    for name in ("id", "problem", "answer"):
        value = getattr(record, name)
        if not isinstance(value, str) or not value.strip():
            return where.problem(f"empty or non-string {name}")
    return record


SOURCES: dict[str, Converter] = {
    "math": convert_math,
    "math500": convert_math500,
    "gsm8k": convert_gsm8k,
    "aime24": convert_aime24,
    "aime25": convert_aime25,
    "amc23": convert_amc23,
    "minerva_math": convert_minerva_math,
    "olympiadbench": convert_olympiadbench,
    "synthetic": convert_record,
}
