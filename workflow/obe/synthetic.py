"""Synthetic arithmetic-chain reasoning task, the embedded default dataset.

A question is a short arithmetic chain, one multiplication of two digits followed by
``difficulty`` additions/subtractions of a digit, e.g.::

    problem:   "Q: 7*3+5-2+8 ="
    solution:  "7*3=21 21+5=26 26-2=24 24+8=32 \\boxed{32}"

Every true intermediate value stays in 0..99, so each answer is a short integer string and
``obe.latex.last_boxed`` extracts it exactly.

Why this shape (it is meant to make the paper's effects visible on a tiny model):

* **Shared skills.** Each step uses one *arithmetic fact*: ``a*b`` for the first step, and
  for ``v+d`` / ``v-d`` the units-digit fact ``(v % 10, op, d)`` (the tens digit only moves
  by the carry). There are only 64 + 90 + 90 = 244 facts, shared by all questions, so what
  RL fixes on training questions transfers to held-out ones.
* **Realistic, systematic mistakes.** The worked solutions used to pre-train the base model
  come from a fixed "student" (:class:`MistakeModel`): a hash-chosen subset of facts is
  *systematically wrong* (written with one fixed wrong value most of the time, e.g.
  ``7*8=54`` or a forgotten carry), another subset is *shaky* (random slips often), the rest
  are reliable (rare random slips). A question therefore has a few answer modes and the
  correct answer is sometimes not the most likely one -- the situation in which RL with a
  0/1 reward collapses onto one mode and pass@k at large k drops.
* **Small outcome space.** Errors are off-by-one or off-by-ten, so the plausible answers of
  a question (:func:`answer_distribution`) number a handful to a few dozen.
* **Difficulty knob.** ``difficulty`` is the number of add/subtract steps after the
  multiplication (1..8); each step is one more chance of a mistake.

Splits are disjoint by a hash of the problem text (about a quarter of all questions are
"test"), deduplicated, and generated deterministically from a seed.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Iterator

from obe.records import Record

SOURCE = "synthetic"
SUBJECT = "arithmetic"
MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 8
DEFAULT_DIFFICULTY = 3
TEST_PERCENT = 25  # share of the question space (by problem hash) that belongs to "test"
MAX_VALUE = 99  # true intermediate values stay within 0..MAX_VALUE
SLIP_DELTAS = (-10, -1, 1, 10)

_PROBLEM_RE = re.compile(r"^Q: (\d)\*(\d)((?:[+-]\d)+) =$")


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class Question:
    """A parsed question: ``a*b`` then ``steps`` of ``(op, d)`` with op in ``+-``."""

    a: int
    b: int
    steps: tuple[tuple[str, int], ...]

    @property
    def problem(self) -> str:
        tail = "".join(f"{op}{d}" for op, d in self.steps)
        return f"Q: {self.a}*{self.b}{tail} ="

    @property
    def difficulty(self) -> int:
        return len(self.steps)

    def true_values(self) -> list[int]:
        """The correct intermediate values, one per step (multiplication first)."""
        v = self.a * self.b
        out = [v]
        for op, d in self.steps:
            v = v + d if op == "+" else v - d
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.true_values()[-1]


def parse_problem(problem: str) -> Question:
    """Inverse of :attr:`Question.problem`; raises ``ValueError`` on foreign text."""
    m = _PROBLEM_RE.match(problem.strip())
    if not m:
        raise ValueError(f"not a synthetic problem: {problem!r}")
    tail = m.group(3)
    steps = tuple((tail[i], int(tail[i + 1])) for i in range(0, len(tail), 2))
    return Question(int(m.group(1)), int(m.group(2)), steps)


def random_question(rng: random.Random, difficulty: int) -> Question:
    """One question with ``difficulty`` add/subtract steps, true values kept in 0..99."""
    _check_difficulty(difficulty)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    v = a * b
    steps = []
    for _ in range(difficulty):
        ops = [op for op in "+-" if (v + 1 <= MAX_VALUE if op == "+" else v - 1 >= 0)]
        op = rng.choice(ops)
        hi = min(9, MAX_VALUE - v) if op == "+" else min(9, v)
        d = rng.randint(1, hi)
        v = v + d if op == "+" else v - d
        steps.append((op, d))
    return Question(a, b, tuple(steps))


def _check_difficulty(difficulty: int) -> None:
    if not (MIN_DIFFICULTY <= int(difficulty) <= MAX_DIFFICULTY):
        raise ValueError(f"difficulty must be in {MIN_DIFFICULTY}..{MAX_DIFFICULTY}, got {difficulty}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_of(problem: str) -> str:
    """``"test"`` or ``"train"``, a pure function of the problem text (so splits never mix)."""
    return "test" if int(_digest("split|" + problem)[:8], 16) % 100 < TEST_PERCENT else "train"


def record_id(problem: str) -> str:
    """Stable id derived from the problem text alone."""
    return f"syn-{_digest(problem)[:12]}"


def to_record(q: Question) -> Record:
    return Record(
        id=record_id(q.problem),
        problem=q.problem,
        answer=str(q.answer),
        source=SOURCE,
        level=str(q.difficulty),
        subject=SUBJECT,
    )


def make_split(split: str, n: int, seed: int, difficulty: int = DEFAULT_DIFFICULTY) -> list[Record]:
    """``n`` distinct questions of ``split`` ("train" or "test"), deterministic in ``seed``.

    Train and test never share a problem (the split is a hash of the problem text), and a
    list never repeats one. Raises ``ValueError`` when the split holds fewer than ``n``
    questions at this difficulty (only plausible for difficulty 1: ~1,100 questions).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    _check_difficulty(difficulty)
    n = int(n)
    rng = random.Random(int(_digest(f"make_split|{seed}|{difficulty}")[:16], 16))
    seen: set[str] = set()
    out: list[Record] = []
    misses = 0
    while len(out) < n:
        q = random_question(rng, difficulty)
        p = q.problem
        if p in seen or split_of(p) != split:
            misses += 1
            if misses > 50 * n + 10_000:
                raise ValueError(f"could not draw {n} distinct {split} questions at difficulty {difficulty}")
            continue
        seen.add(p)
        out.append(to_record(q))
    return out


# --------------------------------------------------------------------------- mistakes


@dataclass(frozen=True)
class MistakeModel:
    """The imperfect "student" whose worked solutions pre-train the base model.

    Each arithmetic fact is, by a hash of ``(fact_seed, fact)``: systematically wrong
    (share ``p_systematic``; writes its one fixed wrong value with prob ``systematic_wrong``),
    shaky (share ``p_shaky``; random slip with prob ``shaky_slip``) or reliable (random slip
    with prob ``slip``). A random slip adds one of ``SLIP_DELTAS`` to the correct value.
    The fact classes depend only on ``fact_seed``, never on the question, so they are shared
    by every question in both splits.
    """

    fact_seed: int = 0
    p_systematic: float = 0.25
    systematic_wrong: float = 0.85
    p_shaky: float = 0.15
    shaky_slip: float = 0.25
    slip: float = 0.03

    def fact_class(self, fact: tuple) -> str:
        u = _unit(f"class|{self.fact_seed}|{fact}")
        if u < self.p_systematic:
            return "systematic"
        if u < self.p_systematic + self.p_shaky:
            return "shaky"
        return "reliable"


DEFAULT_MISTAKES = MistakeModel()
NO_MISTAKES = MistakeModel(p_systematic=0.0, p_shaky=0.0, slip=0.0)


def _unit(text: str) -> float:
    return int(_digest(text)[:13], 16) / float(16**13)


def step_fact(op: str, left: int, right: int) -> tuple:
    """The shared fact a step uses: the full ``a*b`` table, the units digit for ``+``/``-``."""
    if op == "*":
        return ("*", left, right)
    return (op, left % 10, right)


def _systematic_value(mm: MistakeModel, op: str, left: int, right: int, true: int) -> int:
    """The one wrong value a systematically wrong fact writes (fixed per fact and operands)."""
    fact = step_fact(op, left, right)
    if op == "*":
        choices = [true - left, true + left, true - right, true + right, true - 1, true + 1]
    elif op == "+":
        carry = (left % 10) + right >= 10
        choices = [-10, -10, -1, 1] if carry else [-1, 1, 10]  # forgot the carry, or off by one
        choices = [true + c for c in choices]
    else:
        borrow = (left % 10) - right < 0
        choices = [10, 10, -1, 1] if borrow else [-1, 1, -10]  # forgot the borrow, or off by one
        choices = [true + c for c in choices]
    choices = [c for c in choices if c >= 0 and c != true] or [true + 1]
    return choices[int(_unit(f"wrong|{mm.fact_seed}|{fact}") * len(choices))]


def step_outcomes(op: str, left: int, right: int, mm: MistakeModel = DEFAULT_MISTAKES) -> list[tuple[int, float]]:
    """Distribution of the value the student writes for ``left op right`` (sums to 1)."""
    true = left * right if op == "*" else (left + right if op == "+" else left - right)
    cls = mm.fact_class(step_fact(op, left, right))
    if cls == "systematic":
        wrong, p_sys, p_slip = _systematic_value(mm, op, left, right, true), mm.systematic_wrong, mm.slip
    else:
        wrong, p_sys, p_slip = None, 0.0, (mm.shaky_slip if cls == "shaky" else mm.slip)
    probs: dict[int, float] = {}
    if wrong is not None and p_sys > 0:
        probs[wrong] = probs.get(wrong, 0.0) + p_sys
    if p_slip > 0:
        for delta in SLIP_DELTAS:
            v = true + delta
            probs[v] = probs.get(v, 0.0) + p_slip / len(SLIP_DELTAS)
    probs[true] = probs.get(true, 0.0) + max(0.0, 1.0 - p_sys - p_slip)
    return sorted(probs.items())


def _format_solution(q: Question, values: list[int]) -> str:
    parts = [f"{q.a}*{q.b}={values[0]}"]
    for (op, d), prev, cur in zip(q.steps, values[:-1], values[1:]):
        parts.append(f"{prev}{op}{d}={cur}")
    parts.append(f"\\boxed{{{values[-1]}}}")
    return " ".join(parts)


def sample_values(q: Question, rng: random.Random, mm: MistakeModel = DEFAULT_MISTAKES) -> list[int]:
    """The intermediate values one worked solution writes; later steps use the written value."""
    v = _draw(step_outcomes("*", q.a, q.b, mm), rng)
    values = [v]
    for op, d in q.steps:
        v = _draw(step_outcomes(op, v, d, mm), rng)
        values.append(v)
    return values


def _draw(outcomes: list[tuple[int, float]], rng: random.Random) -> int:
    u = rng.random()
    acc = 0.0
    for value, p in outcomes:
        acc += p
        if u < acc:
            return value
    return outcomes[-1][0]


def worked_solution(
    problem: str,
    rng: random.Random | None = None,
    mistakes: MistakeModel | None = None,
) -> str:
    """Worked-solution text for ``problem``, ending in ``\\boxed{answer}``.

    With ``mistakes=None`` (default) the solution is correct and its last box equals the
    gold answer. With a :class:`MistakeModel` (e.g. ``DEFAULT_MISTAKES``) and an ``rng`` it
    is one demonstration from that imperfect student, the pre-training data of the base model.
    """
    q = parse_problem(problem)
    if mistakes is None:
        return _format_solution(q, q.true_values())
    rng = rng if rng is not None else random.Random(0)
    return _format_solution(q, sample_values(q, rng, mistakes))


def answer_distribution(problem: str, mistakes: MistakeModel = DEFAULT_MISTAKES) -> dict[str, float]:
    """Exact distribution of the student's final answer for ``problem`` (answer -> prob)."""
    q = parse_problem(problem)
    dist: dict[int, float] = dict(step_outcomes("*", q.a, q.b, mistakes))
    for op, d in q.steps:
        nxt: dict[int, float] = {}
        for v, p in dist.items():
            for w, pw in step_outcomes(op, v, d, mistakes):
                nxt[w] = nxt.get(w, 0.0) + p * pw
        dist = nxt
    return {str(k): v for k, v in sorted(dist.items(), key=lambda kv: -kv[1])}


def plausible_answers(problem: str, mistakes: MistakeModel = DEFAULT_MISTAKES, min_prob: float = 1e-3) -> list[str]:
    """The outcome space of a question: answers the student gives with prob >= ``min_prob``."""
    return [a for a, p in answer_distribution(problem, mistakes).items() if p >= min_prob]


def iter_demonstrations(
    records: list[Record], seed: int, mistakes: MistakeModel = DEFAULT_MISTAKES
) -> Iterator[tuple[str, str]]:
    """Endless ``(problem, solution)`` pairs: uniform questions, fresh mistakes each time."""
    rng = random.Random(int(_digest(f"demos|{seed}")[:16], 16))
    problems = [r.problem for r in records]
    questions = [parse_problem(p) for p in problems]
    while True:
        i = rng.randrange(len(questions))
        yield problems[i], _format_solution(questions[i], sample_values(questions[i], rng, mistakes))


def demo_stats(records: list[Record], mistakes: MistakeModel = DEFAULT_MISTAKES, k: int = 32) -> dict[str, float]:
    """What a perfect imitation of the student would score: pass@1, pass@k, outcome-space size."""
    p1 = pk = space = mode_correct = 0.0
    for r in records:
        dist = answer_distribution(r.problem, mistakes)
        pc = dist.get(r.answer, 0.0)
        p1 += pc
        pk += 1.0 - (1.0 - pc) ** k
        space += sum(1 for p in dist.values() if p >= 1e-3)
        mode_correct += float(max(dist, key=dist.get) == r.answer)
    n = max(1, len(records))
    return {
        "pass@1": p1 / n,
        f"pass@{k}": pk / n,
        "plausible_answers": space / n,
        "mode_is_correct": mode_correct / n,
    }
