"""Answer grading: extract a final answer, check it against gold, and key it.

Every rollout of the RL trainer goes through :func:`grade`, and every place that counts or
compares answers (historical counts N(x, a), batch repetition, maj@k, distinct answers) uses
:func:`outcome_key`, so the two must agree: if ``verify(a, b)`` then
``outcome_key(a) == outcome_key(b)`` (property-tested; exceptions in ``KNOWN_KEY_EXCEPTIONS``).

Extraction (``extract``, ``ExtractConfig``). ``<think>...</think>`` is dropped. The answer is
the last complete ``\\boxed{}`` (boxes that follow each other with only "and"/commas between
them form a set: ``\\boxed{-2} and \\boxed{1}``); a response cut off inside its box has no
answer. Without a box, a one-line bare answer (``x = 2``, ``Monday``) or a response that is
the gold's own text is taken whole; otherwise Math-Verify's own extraction runs in the worker
(its LaTeX and number patterns in its priority order, boxes at the top: "$9$", "\\[ 9 \\]",
"The answer is 34", lm-eval's Minerva "Final Answer: The final answer is $X$. I hope it is
correct.", which also wins over an earlier box). ``ExtractConfig(mode="boxed")`` keeps the
strict box-only reading (training rewards; config ``train.reward_extract``). A gold written
as a solution (a box in text, or prose) is read the same way.

Pipeline. ``extract`` -> ``normalize`` (cheap string rewrites) -> fast path, in process and
exact (equal strings; rationals; closed forms with ``\\sqrt``/``\\pi``, ``\\pm``, sets,
tuples, intervals, two-interval unions, matrices, mixed numbers; lone decimals of 6+ places
at 6 places; verdicts between polynomials in single-letter variables, and polynomial vs
number) -> slow path: Math-Verify 0.9.0 in persistent worker subprocesses
(:mod:`obe.grading.worker`; ``WORKERS``, default ``min(2, cpus)``). Fast keys are rendered
exactly as the worker renders the same value (tests/test_grading_fast.py checks every shape
against Math-Verify's own parse). Results are cached in bounded LRUs keyed by normalized
strings. ``grade_many`` grades a batch: distinct texts and pairs once, spread over the workers.

Time bounds. A worker call is bounded by CPU time, not wall-clock time (``timeout``, default
``DEFAULT_TIMEOUT_S`` = 5 CPU seconds: a SIGPROF timer in the worker, ``RLIMIT_CPU`` past it
for code stuck in C), so a busy machine never changes a grade (tests/test_grading_determinism.py
grades under spinning load). Wall-clock time is only a far-away last guard (:func:`wall_guard`,
160 s for 5 CPU seconds), whose timeouts are not cached. Workers run under a 4 GiB
address-space limit, so no input can hang or exhaust the caller.

Safety. Model output is untrusted: it is never passed to ``eval``/``exec``/``sympify`` or
``parse_expr``. Math-Verify's ``ExprExtractionConfig`` patterns only *find* plain-text
numbers and expressions; a number becomes ``sympy.Number`` of its digits and an expression is
read by the LaTeX (ANTLR) parser instead of its ``parse_expr``. Plain-text ``sqrt(2)`` and
``**`` are rewritten to LaTeX, never run. Answers longer than ``MAX_ANSWER_CHARS`` are not graded
(key ``<too_long>``); Math-Verify's extraction reads the last ``MAX_RESPONSE_CHARS`` of a response.

Errors. Whatever raises while grading one response (a bug here, or the worker failing on that
input) gives status "error", key ``<error>`` and the exception in ``GradeResult.error``; it is
never folded into "no answer" or "wrong", so the trainers count it (``grading/errors``) and
stop when it passes their limit.

Conventions (decisions, tested in tests/test_grading.py and tests/test_grading_peers.py):
  * degrees are dropped: ``30^\\circ`` == ``30`` (as Math-Verify);
  * percent signs and words are dropped: ``50\\%`` == ``50`` == "50 percent" == "50 pct", but
    ``50\\%`` != ``0.5`` (as Math-Verify's tests and MATH's is_equiv);
  * decimals: written with 6 or more places they equal what rounds to them at 6 places
    (Math-Verify's precision convention: ``0.0833333333333333`` == ``\\frac{1}{12}``,
    ``1.414214`` == ``\\sqrt2``, also inside tuples); shorter decimals are exact (``0.5`` ==
    ``\\frac12``, ``0.333`` != ``\\frac13``); no tolerance for Minerva-style physics answers;
  * thousands separators of a whole-answer number are dropped (``12,000,023``, ``14{,}916``,
    ``16,\\!386.20``); a comma followed by a space separates a list (``32, 349`` != 32349);
  * trailing ``\\text{...}``/``\\mbox{...}`` units and unit words after a number are dropped
    (``5\\text{ cm}`` == "5 cm" == ``5``); a whole-answer ``\\text{Monday}`` is a word, compared
    case-insensitively;
  * ``x = 5`` == ``5`` (a single-letter assignment; as Math-Verify); a derivation
    ``x = 5+5+1 = 11`` is its last member; a computation ``\\sqrt{4} = 2`` is its result;
    equations compare up to rearrangement and scaling (``2x+4y-3=0`` ==
    ``y=-\\frac12x+\\frac34``), and an equation in free variables never equals a number or
    an expression (``7=11a+c`` != ``11a+c``);
  * sets ``\\{1,2\\}`` never equal tuples/intervals ``(1,2)``/``[1,2]``; a bare list ``1, 2``
    (or ``{1, 2}``, whose braces only group) is a set (order-free: ``2, 1`` == ``\\{1,2\\}``),
    except against a gold pair, which it answers in order (``1, 2`` == ``(1,2)`` != ``2, 1``, as
    Math-Verify); ``(1,2)`` is one class whether read as a point or an open interval;
  * exact numbers compare exactly: ``\\frac{1}{2^{98}}`` != ``\\frac{1}{2^{99}}``.

Known Math-Verify 0.9.0 mistakes and what obe does: set-for-tuple ``\\{1,2\\}`` vs ``(1,2)``
is fixed by a bracket-shape pre-check; ``\\frac{1}{2^{98}}`` vs ``\\frac{1}{2^{99}}`` is fixed
by the exact fast path and by a 50-digit post-check when both sides are closed-form numbers;
``1 - \\frac{1}{\\mathrm{e}}`` (its extraction cuts it) is read as obe normalizes it.
Performance: the fast path and caches grade thousands of answers per second; a distinct
answer outside the fast shapes costs one Math-Verify (ANTLR) parse, ~10-600 ms, in a worker.
Not fixed: symbolic identities beyond sympy's simplification (e.g. some trigonometric forms)
may be judged unequal; all-letter answers of 3+ letters (``abc``) are read as words; a
decimal comma (``1,22``) is read as a decimal only in free text (Math-Verify's number
pattern), a bare ``1,22`` is the list {1, 22}.

Modules, in the order an answer meets them:
  * ``grader``: ``grade``, ``grade_many``, ``verify``, ``outcome_key``, the sentinel keys and
    the verdict/key caches;
  * ``extraction``: ``ExtractConfig``, ``extract``, reading a gold written as a solution;
    ``latex``: ``\\boxed{}`` spans;
  * ``normalization``: ``normalize``;
  * ``fastpath``: verdicts and keys without the worker, from the exact values of
    ``fastmath`` (answer shapes), ``closedform`` (numbers with square roots and pi),
    ``numeric`` (rationals, 6-place decimals) and ``polynomials``;
  * ``pool``: the worker subprocesses seen from the grader (time bounds, ``warm_up``);
    ``worker``: the subprocess itself (``python -m obe.grading.worker``).
"""

from obe.grading.extraction import EXTRACT_MODES, MAX_RESPONSE_CHARS, ExtractConfig, extract
from obe.grading.grader import (
    ERROR_KEY, KNOWN_KEY_EXCEPTIONS, MAX_ANSWER_CHARS, NO_ANSWER_KEY, SENTINEL_KEYS, TIMEOUT_KEY, TOO_LONG_KEY,
    GradeResult,
    clear_caches, grade, grade_many, outcome_key, verify,
)
from obe.grading.normalization import normalize
from obe.grading.pool import DEFAULT_TIMEOUT_S, WORKERS, wall_guard, warm_up

__all__ = [
    "DEFAULT_TIMEOUT_S", "ERROR_KEY", "EXTRACT_MODES", "KNOWN_KEY_EXCEPTIONS", "MAX_ANSWER_CHARS",
    "MAX_RESPONSE_CHARS", "NO_ANSWER_KEY", "SENTINEL_KEYS", "TIMEOUT_KEY", "TOO_LONG_KEY", "WORKERS", "ExtractConfig",
    "GradeResult", "clear_caches", "extract", "grade", "grade_many", "normalize", "outcome_key",
    "verify", "wall_guard", "warm_up",
]
