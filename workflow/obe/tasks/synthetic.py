"""Synthetic arithmetic-chain reasoning task, the embedded default dataset.

A question is a short arithmetic chain, one multiplication of two digits followed by
``difficulty`` additions/subtractions of a digit, exactly one of which is written with the
*convention symbol* ``?``, e.g.::

    problem:   "Q: 7*3+5?2+8 ="
    solution:  "7*3=21 21+5=26 26-2=24 24+8=32 \\boxed{32}"   (here ``?`` means ``-``)

Every true intermediate value stays in 0..99, so each answer is a short integer string and
``obe.grading.latex.last_boxed`` extracts it exactly.

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
* **A shared behaviour that is right on most questions and wrong on a minority.** What
  ``?`` means is a convention that varies between questions, like a notation that differs
  between textbooks: on about 70% of the questions (``CONVENTION_PLUS_SHARE``)
  it means ``+``, on the rest ``-``, fixed per question by a hash of the question text up to
  the symbol, so nothing the model can see tells them apart. The student reads ``?`` as
  ``+`` with probability ``read_plus`` (0.7) on *every* question and writes the sign it
  chose. Reading ``+`` is therefore right on most questions and wrong on the minority: a 0/1
  reward on the (mostly ``+``) training questions pushes the one shared reading towards
  ``+``, which raises pass@1 and makes the minority questions, in training and at test,
  ever harder to solve -- the paper's mechanism (diversity lost on solved questions costs
  the unsolved ones), and what exploration bonuses on final answers should slow down.
  :func:`rollout_metrics` measures the reading rate from rollout texts (a training metric).
* **Small outcome space.** Errors are off-by-one or off-by-ten, so the plausible answers of
  a question (:func:`answer_distribution`) number a handful to a few dozen.
* **Difficulty knob.** ``difficulty`` is the number of add/subtract steps after the
  multiplication (1..8); each step is one more chance of a mistake.

Both readings keep every intermediate value in 0..99 at the ``?`` step. Splits are disjoint by a hash of the problem text (about a quarter of all questions are
"test"), deduplicated, and generated deterministically from a seed.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Iterator

from obe.core.records import Record

SOURCE = "synthetic"
SUBJECT = "arithmetic"
MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 8
DEFAULT_DIFFICULTY = 3
TEST_PERCENT = 25  # share of the question space (by problem hash) that belongs to "test"
MAX_VALUE = 99  # true intermediate values stay within 0..MAX_VALUE
SLIP_DELTAS = (-10, -1, 1, 10)
CONVENTION = "?"  # the convention symbol: "+" on most questions, "-" on the rest
CONVENTION_PLUS_SHARE = 0.7  # share of questions (by hash) on which "?" means "+"

_PROBLEM_RE = re.compile(r"^Q: (\d)\*(\d)((?:[-+?]\d)+) =$")
_STEP_RE = re.compile(r"^-?\d+([+-])(\d)=")


# --------------------------------------------------------------------------- questions


def convention_of(prefix: str) -> str:
    """What ``?`` means in a question whose text up to and including ``?d`` is ``prefix``."""
    return "+" if _unit(f"convention|{prefix}") < CONVENTION_PLUS_SHARE else "-"


@dataclass(frozen=True)
class Question:
    """A parsed question: ``a*b`` then ``steps`` of ``(op, d)`` with op in ``+-?``."""

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

    def meanings(self) -> list[str]:
        """The operation each step means: ``?`` resolved by :func:`convention_of`."""
        out, prefix = [], f"Q: {self.a}*{self.b}"
        for op, d in self.steps:
            prefix += f"{op}{d}"
            out.append(convention_of(prefix) if op == CONVENTION else op)
        return out

    @property
    def convention(self) -> str | None:
        """The meaning of the question's first ``?`` (None without one)."""
        for (op, _), meaning in zip(self.steps, self.meanings()):
            if op == CONVENTION:
                return meaning
        return None

    def true_values(self) -> list[int]:
        """The correct intermediate values, one per step (multiplication first)."""
        v = self.a * self.b
        out = [v]
        for (_, d), op in zip(self.steps, self.meanings()):
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
    """One question with ``difficulty`` add/subtract steps, one of them written ``?``.

    True values stay in 0..99, and at the ``?`` step both readings do.
    """
    _check_difficulty(difficulty)
    while True:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        conv_at = rng.randrange(difficulty)
        v = a * b
        prefix = f"Q: {a}*{b}"
        steps = []
        for i in range(difficulty):
            if i == conv_at:
                hi = min(9, v, MAX_VALUE - v)
                if hi < 1:
                    break  # no digit keeps both readings in range: draw another question
                op, d = CONVENTION, rng.randint(1, hi)
                prefix += f"{op}{d}"
                meaning = convention_of(prefix)
            else:
                ops = [o for o in "+-" if (v + 1 <= MAX_VALUE if o == "+" else v - 1 >= 0)]
                op = meaning = rng.choice(ops)
                hi = min(9, MAX_VALUE - v) if op == "+" else min(9, v)
                d = rng.randint(1, hi)
                prefix += f"{op}{d}"
            v = v + d if meaning == "+" else v - d
            steps.append((op, d))
        if len(steps) == difficulty:
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


def make_split(split: str, num_questions: int, seed: int, difficulty: int = DEFAULT_DIFFICULTY) -> list[Record]:
    """``num_questions`` distinct questions of ``split`` ("train" or "test"), deterministic in ``seed``.

    Train and test never share a problem (the split is a hash of the problem text), and a
    list never repeats one. Raises ``ValueError`` when the split holds fewer than
    ``num_questions`` questions at this difficulty (only plausible for difficulty 1: ~560 questions, ~140 test).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    _check_difficulty(difficulty)
    wanted = int(num_questions)
    rng = random.Random(int(_digest(f"make_split|{seed}|{difficulty}")[:16], 16))
    seen: set[str] = set()
    out: list[Record] = []
    misses = 0
    while len(out) < wanted:
        q = random_question(rng, difficulty)
        p = q.problem
        if p in seen or split_of(p) != split:
            misses += 1
            if misses > 50 * wanted + 10_000:
                raise ValueError(f"could not draw {wanted} distinct {split} questions at difficulty {difficulty}")
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
    by every question in both splits. The convention symbol ``?`` is read as ``+`` with
    probability ``read_plus`` on every question (``None``: the student knows each question's
    convention, as the error-free student does).
    """

    fact_seed: int = 0
    p_systematic: float = 0.15
    systematic_wrong: float = 0.85
    p_shaky: float = 0.15
    shaky_slip: float = 0.25
    slip: float = 0.03
    read_plus: float | None = CONVENTION_PLUS_SHARE

    def readings(self, meaning: str) -> list[tuple[str, float]]:
        """How the student reads a ``?`` that means ``meaning``: [(op, prob)]."""
        if self.read_plus is None:
            return [(meaning, 1.0)]
        return [(op, p) for op, p in (("+", self.read_plus), ("-", 1.0 - self.read_plus)) if p > 0]

    def fact_class(self, fact: tuple) -> str:
        u = _unit(f"class|{self.fact_seed}|{fact}")
        if u < self.p_systematic:
            return "systematic"
        if u < self.p_systematic + self.p_shaky:
            return "shaky"
        return "reliable"


DEFAULT_MISTAKES = MistakeModel()
NO_MISTAKES = MistakeModel(p_systematic=0.0, p_shaky=0.0, slip=0.0, read_plus=None)


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


def _format_solution(q: Question, values: list[int], ops: list[str]) -> str:
    """The worked solution; ``ops`` are the signs written (``?`` is written as its reading)."""
    parts = [f"{q.a}*{q.b}={values[0]}"]
    for (_, d), op, prev, cur in zip(q.steps, ops, values[:-1], values[1:]):
        parts.append(f"{prev}{op}{d}={cur}")
    parts.append(f"\\boxed{{{values[-1]}}}")
    return " ".join(parts)


def sample_steps(q: Question, rng: random.Random, mm: MistakeModel = DEFAULT_MISTAKES) -> tuple[list[str], list[int]]:
    """The signs and intermediate values one worked solution writes; later steps use the written value."""
    v = _draw(step_outcomes("*", q.a, q.b, mm), rng)
    values, ops = [v], []
    for (op, d), meaning in zip(q.steps, q.meanings()):
        if op == CONVENTION:
            op = _draw(mm.readings(meaning), rng)
        v = _draw(step_outcomes(op, v, d, mm), rng)
        ops.append(op)
        values.append(v)
    return ops, values


def _draw(outcomes: list[tuple], rng: random.Random):
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
        return _format_solution(q, q.true_values(), q.meanings())
    rng = rng if rng is not None else random.Random(0)
    return _format_solution(q, *reversed(sample_steps(q, rng, mistakes)))


def answer_distribution(problem: str, mistakes: MistakeModel = DEFAULT_MISTAKES) -> dict[str, float]:
    """Exact distribution of the student's final answer for ``problem`` (answer -> prob)."""
    q = parse_problem(problem)
    dist: dict[int, float] = dict(step_outcomes("*", q.a, q.b, mistakes))
    for (op, d), meaning in zip(q.steps, q.meanings()):
        reads = mistakes.readings(meaning) if op == CONVENTION else [(op, 1.0)]
        nxt: dict[int, float] = {}
        for v, p in dist.items():
            for read, pr in reads:
                for w, pw in step_outcomes(read, v, d, mistakes):
                    nxt[w] = nxt.get(w, 0.0) + p * pr * pw
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
        yield problems[i], _format_solution(questions[i], *reversed(sample_steps(questions[i], rng, mistakes)))


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


# --------------------------------------------------------------------------- the shared behaviour


ROLLOUT_METRICS = {
    "convention/read_plus": "share of readable rollouts reading the synthetic task's '?' as '+' (right on ~70% "
                            "of questions; null for other tasks)",
    "convention/right_majority": "share reading '?' right on questions where it means '+' (null if none)",
    "convention/right_minority": "share reading '?' right on questions where it means '-' (null if none)",
    "convention/unreadable": "share of rollouts whose '?' step could not be read (null for other tasks)",
}


def read_convention(problem: str, text: str) -> str | None:
    """The sign a solution text wrote for the question's ``?`` step ("+", "-"), else None.

    The step is found by position (the i-th step after the product), and must carry the
    question's digit; None for foreign problems, problems without ``?`` or malformed text.
    """
    try:
        q = parse_problem(problem)
    except ValueError:
        return None
    at = next((i for i, (op, _) in enumerate(q.steps) if op == CONVENTION), None)
    parts = text.strip().split(" ")
    if at is None or len(parts) <= at + 1:
        return None
    m = _STEP_RE.match(parts[at + 1])
    if not m or int(m.group(2)) != q.steps[at][1]:
        return None
    return m.group(1)


def rollout_metrics(problems: list[str], texts: list[str]) -> dict[str, float | None]:
    """The shared behaviour's rate in a batch of rollouts (one problem per text).

    ``convention/read_plus``: share of readable rollouts that read ``?`` as ``+`` (the
    reading right on most questions); ``convention/right_majority`` and
    ``convention/right_minority``: share reading it right on questions where it means ``+``
    / ``-``; ``convention/unreadable``: share of rollouts whose ``?`` step could not be read.
    Every key is None for a batch without a ``?`` question (other tasks).
    """
    reads: list[tuple[str, str]] = []  # (meaning, reading)
    unreadable = total = 0
    for problem, text in zip(problems, texts):
        try:
            meaning = parse_problem(problem).convention
        except ValueError:
            continue
        if meaning is None:
            continue
        total += 1
        read = read_convention(problem, text)
        if read is None:
            unreadable += 1
        else:
            reads.append((meaning, read))
    if not total:
        return dict.fromkeys(ROLLOUT_METRICS)
    share = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "convention/read_plus": share([r == "+" for _, r in reads]),
        "convention/right_majority": share([r == m for m, r in reads if m == "+"]),
        "convention/right_minority": share([r == m for m, r in reads if m == "-"]),
        "convention/unreadable": unreadable / total,
    }
