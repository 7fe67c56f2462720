"""Final answers: where a solution states one, and whether it equals the gold.

Extraction takes the most explicit marker present: the last `\\boxed{}` or
`\\fbox{}` (braces matched, so `\\boxed{\\frac{\\sqrt{3}}{3}}` is whole), else
"#### N" or "the answer is ...", else the last number. Equivalence is exact
for plain numbers (`1{,}000`, `$18.00`, `50\\%`, `3/4`) and otherwise goes
through math-verify (LaTeX parsed to sympy: fractions vs decimals, tuples,
intervals, `x=5` vs `5`), under a time limit so a pathological expression
never hangs a batch.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_BOX_COMMANDS = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MARKERS = (
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"answer\s*(?:is|:)\s*[:\s]*\**\s*\$?\s*(-?\\?d?frac\{[^{}]*\}\{[^{}]*\}|-?\d+\s*/\s*\d+|" + _NUMBER + r"%?)", re.IGNORECASE),
)
_ANY_NUMBER = re.compile(_NUMBER)
MATH_VERIFY_TIMEOUT_S = 5.0


def extract_answer(text: str, last_number: bool = True) -> str | None:
    """The final answer in `text` as a plain string, or None. `last_number`
    False: only an explicit marker counts (a solution cut off mid-sentence
    must not offer its last number as the answer)."""
    span = answer_span(text, last_number)
    return None if span is None else _clean(text[span[0] : span[1]])


def answer_span(text: str, last_number: bool = True) -> tuple[int, int] | None:
    """Where the final answer sits in `text` (start, end), by the rules above."""
    boxed = _last_box_span(text)
    if boxed is not None:
        return boxed
    for pattern in _MARKERS:
        match = _last(pattern, text)
        if match is not None:
            return match.span(1)
    match = _last(_ANY_NUMBER, text) if last_number else None
    return None if match is None else match.span(0)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{} / \\fbox{} in `text` (braces matched)."""
    span = _last_box_span(text)
    return None if span is None else text[span[0] : span[1]]


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):
        pass
    return last


def _last_box_span(text: str) -> tuple[int, int] | None:
    """The span inside the braces of the last complete \\boxed{...}."""
    found = None
    for match in _BOX_COMMANDS.finditer(text):
        start, depth = match.end(), 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found = (start, i)
                break
    return found


_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_UNITS_AFTER_NUMBER = re.compile(r"^(-?[\d.,]+)\s*(?:[a-zA-Z][a-zA-Z .]*)$")


def _clean(raw: str) -> str:
    s = raw.strip().strip("$").strip()
    s = _TEXT.sub(r"\1", s)
    s = s.replace("{,}", ",").replace("\\!", "").replace("\\,", "").replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "%").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.strip().rstrip(".").strip()
    units = _UNITS_AFTER_NUMBER.match(s)
    if units:  # "18 dollars", "5 cm"
        s = units.group(1)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?%?", s):
        s = s.replace(",", "")
    number = _as_number(s)
    if number is None:
        return s
    return str(number.numerator) if number.denominator == 1 else s


def _as_number(s: str) -> Fraction | None:
    """A plain number (thousands separators, %, a/b and \\frac{a}{b} allowed)."""
    s = s.replace(" ", "").rstrip("%")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    frac = re.fullmatch(r"(-?)\\d?frac\{(-?\d+)\}\{(\d+)\}", s) or re.fullmatch(r"(-?)\\d?frac(\d)(\d)", s)
    slash = re.fullmatch(r"(-?\d+)/(\d+)", s)
    try:
        if frac:
            value = Fraction(int(frac.group(2)), int(frac.group(3)))
            return -value if frac.group(1) else value
        if slash:
            return Fraction(int(slash.group(1)), int(slash.group(2)))
        if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def gold_answer(answer_field: str) -> str:
    """GSM8K gold solutions end in '#### N'; plain answers pass through."""
    if "####" in answer_field:
        answer_field = answer_field.rsplit("####", 1)[1]
    return _clean(answer_field)


def answers_match(predicted: str | None, gold: str) -> bool:
    """Exact equality for plain numbers, else math-verify's LaTeX/sympy
    equivalence; a comparison that runs out of time counts as no match."""
    if predicted is None:
        return False
    a, b = _clean(predicted), _clean(gold)
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return x == y
    if _normal(a) == _normal(b):
        return True
    return _math_verify(a, b)


def _normal(s: str) -> str:
    """Spelling differences that never change a value: spaces, \\left/\\right,
    \\dfrac, a single-letter choice's wrapping like (C)."""
    s = re.sub(r"\\left|\\right|\\displaystyle|\s", "", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    choice = re.fullmatch(r"\(?([A-Ea-e])\)?", s)
    return choice.group(1).upper() if choice else s


def _math_verify(predicted: str, gold: str) -> bool:
    """math-verify in a worker thread with a deadline: its own timeouts use
    SIGALRM, which only the main thread may set, so they are switched off and
    the deadline is enforced here instead."""
    outcome: list[bool] = []

    def run() -> None:
        try:
            import logging

            from math_verify import parse, verify

            logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that we switched its timeouts off

            g = parse(f"${gold}$", parsing_timeout=None)
            p = parse(f"${predicted}$", parsing_timeout=None)
            outcome.append(bool(g and p and verify(g, p, timeout_seconds=None)))
        except Exception:  # noqa: BLE001 - an unparseable answer is simply not a match
            outcome.append(False)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(MATH_VERIFY_TIMEOUT_S)
    return bool(outcome and outcome[0])
