"""Final-answer extraction and a numeric GSM8K checker.

Models end in many ways ("The answer is 18.", "\\boxed{18}", "#### 18",
"$18.00"); we take the most explicit marker present, else the last number.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_MARKERS = (
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"answer\s*(?:is|:)\s*[:\s]*\**\s*(" + _NUMBER + ")", re.IGNORECASE),
)
_ANY_NUMBER = re.compile(_NUMBER)


def extract_answer(text: str) -> str | None:
    """Return the final answer in `text` as a plain string, or None."""
    span = answer_span(text)
    return None if span is None else _clean(text[span[0] : span[1]])


def answer_span(text: str) -> tuple[int, int] | None:
    """Where the final answer sits in `text` (start, end), by the same rules:
    the last \\boxed{}, else the last explicit marker, else the last number."""
    for pattern, group in ((_BOXED, 1), *((m, 1) for m in _MARKERS), (_ANY_NUMBER, 0)):
        last = None
        for last in pattern.finditer(text):
            pass
        if last is not None:
            return last.span(group)
    return None


def _clean(raw: str) -> str:
    s = raw.strip().replace("$", "").replace(",", "").replace(" ", "")
    s = s.removeprefix("\\text{").rstrip("}") if s.startswith("\\text{") else s
    s = s.rstrip(".")
    number = _as_number(s)
    if number is None:
        return s
    return str(number.numerator) if number.denominator == 1 else s


def _as_number(s: str) -> Fraction | None:
    frac = re.fullmatch(r"\\d?frac\{(-?\d+)\}\{(\d+)\}", s)
    try:
        if frac:
            return Fraction(int(frac.group(1)), int(frac.group(2)))
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def gold_answer(answer_field: str) -> str:
    """GSM8K gold solutions end in '#### N'; plain answers pass through."""
    if "####" in answer_field:
        answer_field = answer_field.rsplit("####", 1)[1]
    return _clean(answer_field)


def answers_match(predicted: str | None, gold: str) -> bool:
    """Exact numeric equality when both parse as numbers, else string equality."""
    if predicted is None:
        return False
    a, b = _as_number(_clean(predicted)), _as_number(_clean(gold))
    if a is not None and b is not None:
        return a == b
    return _clean(predicted) == _clean(gold)
