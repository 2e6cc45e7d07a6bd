"""Property tests: verify(a, b) implies outcome_key(a) == outcome_key(b), except documented pairs."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obe.grading import KNOWN_KEY_EXCEPTIONS, SENTINEL_KEYS, normalize, outcome_key, verify
from tests.test_grading import TABLE

# Every answer of the table, paired with every other answer of its row's neighbourhood.
ANSWERS = sorted({a for g, p, _ in TABLE for a in (g, p) if normalize(a)})
PAIRS = [(g, p) for g, p, _ in TABLE if normalize(g) and normalize(p)]
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_EXCEPTIONS = {frozenset((normalize(a), normalize(b))) for a, b in KNOWN_KEY_EXCEPTIONS}


def _check(a: str, b: str) -> None:
    if frozenset((normalize(a), normalize(b))) in _EXCEPTIONS:
        return
    if verify(a, b, timeout=30):
        assert outcome_key(a, timeout=30) == outcome_key(b, timeout=30), (a, b)


def test_table_pairs_agree() -> None:
    for a, b in PAIRS:
        _check(a, b)
        _check(b, a)


@_SETTINGS
@given(st.sampled_from(ANSWERS), st.sampled_from(ANSWERS))
def test_any_two_table_answers_agree(a: str, b: str) -> None:
    _check(a, b)


def _formats(v: Fraction) -> list[str]:
    """Ways a model or a dataset writes the rational ``v``."""
    p, q = v.numerator, v.denominator
    sign = "-" if p < 0 else ""
    out = [f"{sign}\\frac{{{abs(p)}}}{{{q}}}", f"{sign}\\dfrac{{{abs(p)}}}{{{q}}}", f"{p}/{q}",
           f"\\frac{{{p * 3}}}{{{q * 3}}}", f"\\boxed{{{p}/{q}}}"]
    if q == 1:
        out += [str(p), f"{p}.0", f"{p:,}", f"{p}^\\circ", f"{p}\\%", f"{p}\\text{{ cm}}", f"x = {p}",
                f"{p} percent", f"{p} pct", f"{p:,}.00", f"{p} dollars"]
    # a long decimal (10 places; equal at 6 places, Math-Verify's convention), any denominator
    tenth = round(v * 10**10)
    sign10 = "-" if tenth < 0 else ""
    out.append(f"{sign10}{abs(tenth) // 10**10}.{abs(tenth) % 10**10:010d}")
    d = q
    for prime in (2, 5):
        while d % prime == 0:
            d //= prime
    if d == 1:  # terminating decimal
        digits = 0
        while (v * 10**digits).denominator != 1:
            digits += 1
        out.append(f"{float(v):.{digits}f}" if digits < 15 else str(v))
    return out


@_SETTINGS
@given(st.fractions(min_value=-10**6, max_value=10**6, max_denominator=400), st.data())
def test_number_formats_share_one_key(v: Fraction, data: st.DataObject) -> None:
    forms = _formats(v)
    a, b = data.draw(st.sampled_from(forms)), data.draw(st.sampled_from(forms))
    assert verify(a, b), (a, b)
    key = outcome_key(a)
    assert key == outcome_key(b) == str(v) and key not in SENTINEL_KEYS


@_SETTINGS
@given(st.fractions(min_value=-1000, max_value=1000, max_denominator=50),
       st.fractions(min_value=-1000, max_value=1000, max_denominator=50))
def test_different_numbers_differ(v: Fraction, w: Fraction) -> None:
    a, b = f"\\frac{{{v.numerator}}}{{{v.denominator}}}", str(w)
    assert verify(a, b) is (v == w)
    assert (outcome_key(a) == outcome_key(b)) is (v == w)
