"""Where the answer of a response (or of a gold written as a solution) is read.

``<think>...</think>`` is dropped. The answer is the last complete ``\\boxed{}`` (boxes that
follow each other with only "and"/commas between them form a set); a response cut off inside
its box has no answer. Without a box, a one-line bare answer (``x = 2``, ``Monday``) is taken
whole; otherwise Math-Verify's own extraction runs in a worker (:func:`extract_slow`, cached
by a digest of the text). ``ExtractConfig(mode="boxed")`` keeps the strict box-only reading.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from obe.grading import pool  # called as pool.slow, so tests can replace it
from obe.grading.latex import boxed_spans
from obe.grading.pool import CACHE_SIZE, DEFAULT_TIMEOUT_S, LRU

MAX_RESPONSE_CHARS = 20_000  # Math-Verify's extraction reads the last 20,000 characters
EXTRACT_CACHE = LRU(CACHE_SIZE)  # text digest -> answer ("" for none)
GOLD_CACHE = LRU(CACHE_SIZE)  # gold -> its answer


@dataclass(frozen=True)
class ExtractConfig:
    """Where the answer of a response is read.

    ``mode`` "math_verify" (default): the last complete ``\\boxed{}`` (boxes that follow each
    other with only "and", commas or spaces between them are read together as a set, e.g.
    ``\\boxed{-2} and \\boxed{1}``); a response cut off inside a later box has only the boxes
    before it. Without a complete box, a one-line bare answer is taken whole (``x = 2``);
    otherwise, and when a Minerva-format "Final Answer: The final answer is X. I hope it is
    correct." comes after the last box, Math-Verify's own extraction (its LaTeX and number
    patterns, in its priority order) decides, in the worker. ``mode`` "boxed": only a complete
    box counts (strict training rewards; config key ``train.reward_extract``). Either way
    ``<think>...</think>`` content is ignored.
    """

    mode: str = "math_verify"

    def __post_init__(self) -> None:
        if self.mode not in EXTRACT_MODES:
            raise ValueError(f"ExtractConfig.mode {self.mode!r}: not one of {', '.join(EXTRACT_MODES)}")


EXTRACT_MODES = ("math_verify", "boxed")
_MINERVA_TAIL_RE = re.compile(r"final answer is.{0,400}?I hope", re.IGNORECASE | re.DOTALL)
_BOX_GAP_RE = re.compile(
    r"(?:\s|\$|\\[\[\]()]|[.,;]|\\quad|\\qquad|\\text\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b)*"
)
_THINK_END = "</think>"
# Words outside math and LaTeX commands: tell a bare answer or a gold from prose.
_MATH_OR_COMMAND_RE = re.compile(
    r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+(?:\{[^{}]*\})?|(?<![A-Za-z])sqrt(?=\()", re.DOTALL)
_PROSE_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_STRUCTURE_RE = re.compile(r"[A-Za-z\\{}\[\]=<>]|\(.*,")  # letters, commands, braces, relations, tuples


def final_boxes(text: str, spans: list[tuple[int, int, str]] | None = None) -> str | None:
    """The last box, joined with the boxes right before it that only "and"/commas separate."""
    spans = boxed_spans(text) if spans is None else spans
    if not spans:
        return None
    run = [spans[-1]]
    for prev in reversed(spans[:-1]):
        gap = text[prev[1] : run[0][0]]
        if len(gap) > 60 or not _BOX_GAP_RE.fullmatch(gap):
            break
        run.insert(0, prev)
    parts = list(dict.fromkeys(c.strip() for _, _, c in run if c.strip()))
    return ", ".join(parts) if parts else ""


def strip_think(text: str) -> str:
    """What follows the last ``</think>``: the reasoning before it is never graded."""
    return text.rsplit(_THINK_END, 1)[1] if _THINK_END in text else text


def needs_worker_extraction(text: str, config: ExtractConfig) -> tuple[str | None, bool]:
    """(the boxed answer, whether Math-Verify's extraction in the worker must decide)."""
    text = strip_think(text)
    spans = boxed_spans(text)
    boxed = final_boxes(text, spans)
    if config.mode == "boxed":
        return boxed, False
    if text.rfind("boxed{") >= (spans[-1][1] if spans else 0) and "boxed{" in text:
        return boxed, False  # cut off while writing the answer's box: the last complete box or none
    if boxed is None:
        if _is_bare_answer(text):
            return text.strip(), False  # the whole response is the answer: "x = 2", "odd $n$"
        return None, True
    tail = text[spans[-1][1] :]
    return boxed, "I hope" in tail and bool(_MINERVA_TAIL_RE.search(tail))


def extract(text: str, config: ExtractConfig = ExtractConfig(), *, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """The final answer in ``text`` (see :class:`ExtractConfig`), or ``None``.

    Math-Verify's extraction runs in the worker under the same CPU-time bound as every
    worker call (``timeout`` CPU seconds); a response it times out on, or raises on, has no
    answer here (grading reports the latter as an error: :func:`extract_or_raise`).
    """
    try:
        return extract_or_raise(text, config, timeout=timeout)
    except pool.WorkerError:
        return None


def extract_or_raise(text: str, config: ExtractConfig = ExtractConfig(), *, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """:func:`extract`, raising ``pool.WorkerError`` when the worker raised on ``text``."""
    boxed, ask = needs_worker_extraction(text, config)
    if ask:
        found = extract_slow(strip_think(text), timeout)
        if found:
            return found
    return boxed.strip() or None if boxed is not None else None


def _is_bare_answer(text: str) -> bool:
    """A response that is only an answer without delimiters, one short line: no word outside
    math and LaTeX commands but some structure a number pattern would cut (``x = 2``,
    ``{1, 2}``, ``2,3,\\frac{3+i\\sqrt3}{2}``), or a single word other than Math-Verify's
    anchor "answer", and no number outside math (``Monday``, ``odd $n$``). Plain numbers
    (``1000,99``, ``11 5/6``) are left to Math-Verify's number patterns."""
    t = text.strip()
    if not 0 < len(t) <= 200 or "\n" in t or "boxed" in t:  # an unclosed box is no answer
        return False
    outside = _MATH_OR_COMMAND_RE.sub(" ", t)
    words = _PROSE_WORD_RE.findall(outside)
    if not words:
        return bool(_STRUCTURE_RE.search(t))
    return (len(words) == 1 and "answer" not in words[0].lower() and ":" not in outside
            and not any(c.isdigit() for c in outside))


def extract_slow(text: str, timeout: float) -> str | None:
    """Math-Verify's extraction in the worker: the answer string, "" for none, None on timeout."""
    if len(text) > MAX_RESPONSE_CHARS:
        text = text[-MAX_RESPONSE_CHARS:]  # the answer is at the end; bounds the regex work
    key = text_key(text)
    hit = EXTRACT_CACHE.get(key)
    if hit is not None:
        return hit
    resp, cacheable = pool.slow({"op": "extract", "t": text}, timeout)
    if resp is None:
        if cacheable:  # over its CPU budget: the same on any machine, so no answer for good
            EXTRACT_CACHE.put(key, "")
        return None
    if "error" in resp:  # not "no answer": the worker has no answer for this text
        raise pool.WorkerError(f"the grading worker raised {resp['error']} extracting the answer of {text[-200:]!r}")
    answer = resp.get("answer") or ""
    if cacheable:
        EXTRACT_CACHE.put(key, answer)
    return answer


def text_key(text: str) -> bytes:
    """The extraction cache's key: a 128-bit digest, so 65,536 long responses cost ~5 MB, not GBs."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def gold_answer(gold: str, timeout: float) -> str:
    """The answer of a gold: itself, unless it is a worked solution (a box in text, or two
    or more words outside math: "answer is 10000"), which is then read as a response is."""
    hit = GOLD_CACHE.get(gold)
    if hit is None:
        hit = _read_gold(gold, timeout)
        if hit is not None:
            GOLD_CACHE.put(gold, hit)
    return gold if hit is None else hit


def _read_gold(gold: str, timeout: float) -> str | None:
    """The gold's answer, or None when Math-Verify's extraction timed out (not cached)."""
    text = strip_think(gold)
    boxed = final_boxes(text)
    if boxed:
        return boxed
    if len(_PROSE_WORD_RE.findall(_MATH_OR_COMMAND_RE.sub(" ", text))) >= 2:
        found = extract_slow(text, timeout)
        if found is None:
            return None
        if found:
            return found
    return gold


def same_text(response: str, gold: str) -> bool:
    if len(response) > 2 * len(gold) + 64:  # cheap rejection of the usual long response
        return False
    return " ".join(strip_think(response).split()) == " ".join(gold.split())
