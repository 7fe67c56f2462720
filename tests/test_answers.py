"""Answers a user would grade by eye: extraction and equivalence, GSM8K- and MATH-style."""

import time

import pytest

from steer_cli import answers
from steer_cli.answers import answers_match, extract_answer, gold_answer, last_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("So she makes 9 * 2 = 18 dollars.\n\nThe answer is 18.", "18"),
        ("Therefore, the answer is \\(\\boxed{18}\\).", "18"),
        ("\\boxed{\\frac{1}{2}} and then 7", "\\frac{1}{2}"),
        ("#### 1,234", "1234"),
        ("The answer is $1,200.50.", "1200.50"),
        ("The answer is: **42**", "42"),
        ("first 3 then 7 then -5", "-5"),
        ("The total is 18.00 dollars", "18"),
        ("no numbers here", None),
        ("so \\boxed{\\frac{\\sqrt{3}}{3}}.", "\\frac{\\sqrt{3}}{3}"),
        ("\\boxed{1{,}000}", "1000"),
        ("the answer is 1/2", "1/2"),
        ("\\boxed{50\\%}", "50"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{\\text{(C)}}", "(C)"),
        ("\\fbox{7}", "7"),
        ("first \\boxed{2}, finally \\boxed{5}", "5"),
        ("\\boxed{18 \\text{ dollars}}", "18"),
        ("\\boxed{x=5}", "x=5"),
        ("\\boxed{\\dfrac{3}{4}}", "\\dfrac{3}{4}"),
        ("an unclosed \\boxed{12 and 7", "7"),
    ],
)
def test_extracts_the_most_explicit_final_answer(text, expected):
    assert extract_answer(text) == expected


def test_a_cut_off_solution_offers_no_stray_number():
    assert extract_answer("1. First,", last_number=False) is None
    assert extract_answer("so \\boxed{4}", last_number=False) == "4"
    assert extract_answer("1. First,") == "1"


def test_last_boxed_matches_nested_braces():
    assert last_boxed("a \\boxed{\\frac{a}{b^{2}}} b") == "\\frac{a}{b^{2}}"
    assert last_boxed("nothing") is None


def test_gold_answer_reads_the_gsm8k_marker():
    assert gold_answer("She sells 9 eggs.\n#### 18") == "18"
    assert gold_answer("#### 1,000") == "1000"


CASES = [
    # GSM8K-style: exact numbers
    ("18", "18", True), ("18.0", "18", True), ("1,000", "1000", True), ("1{,}000", "1000", True), ("17", "18", False),
    (None, "18", False), ("$18.00", "18", True), ("-5", "-5", True), ("-5", "5", False), ("0.5", "1/2", True),
    ("50\\%", "50", True), ("50%", "0.5", False), ("3/4", "0.75", True), ("12", "12.5", False), ("007", "7", True),
    ("1,234,567", "1234567", True), ("18 dollars", "18", True), ("\\$18", "18", True), ("18.", "18", True), ("1e3", "1000", True),
    # MATH-style: fractions, roots, pi
    ("\\frac{1}{2}", "0.5", True), ("\\frac12", "0.5", True), ("\\dfrac{3}{4}", "\\frac{3}{4}", True), ("\\tfrac{3}{4}", "0.75", True),
    ("\\frac{2}{4}", "\\frac{1}{2}", True), ("\\frac{1}{3}", "0.33", False), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("\\sqrt{2}", "2^{1/2}", True), ("\\sqrt{8}", "2\\sqrt{2}", True), ("\\sqrt{3}", "\\sqrt{2}", False), ("2\\pi", "\\pi \\cdot 2", True),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}", False), ("-\\frac{1}{2}", "\\frac{-1}{2}", True), ("\\frac{7}{2}", "3.5", True),
    # tuples, intervals, sets
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True), ("(1, 2)", "(2, 1)", False), ("(1,2)", "\\left(1,2\\right)", True),
    ("[0, 1)", "[0,1)", True), ("[0,1]", "(0,1)", False), ("(-\\infty, 3]", "(-\\infty,3]", True), ("\\{1,2,3\\}", "\\{3,2,1\\}", True),
    # equations and variables
    ("x=5", "5", True), ("x = 5", "5", True), ("y=-2", "-2", True), ("x=4", "5", False), ("2x+1", "1+2x", True), ("x^2-1", "(x-1)(x+1)", True),
    ("x^2+1", "x^2-1", False),
    # multiple choice and text
    ("\\text{(C)}", "C", True), ("(C)", "C", True), ("C", "c", True), ("B", "C", False), ("\\text{C}", "C", True),
    # degrees, percent, units
    ("30^\\circ", "30", True), ("30^{\\circ}", "30", True), ("25\\%", "25", True), ("5 cm", "5", True),
    # expressions that are numbers
    ("2^{10}", "1024", True), ("10!", "3628800", True), ("\\frac{10}{4}", "\\frac{5}{2}", True), ("0.25", "\\frac{1}{4}", True),
    ("1.5", "\\frac{3}{2}", True), ("\\infty", "\\infty", True), ("", "5", False), ("nonsense{", "5", False),
]


@pytest.mark.parametrize("pred, gold, ok", CASES)
def test_equivalence_table(pred, gold, ok):
    assert answers_match(pred, gold) is ok


def test_the_table_is_at_least_sixty_cases():
    assert len(CASES) >= 60


def test_a_pathological_comparison_times_out_as_no_match(monkeypatch):
    monkeypatch.setattr(answers, "MATH_VERIFY_TIMEOUT_S", 0.2)

    def slow(a, b):
        time.sleep(5)
        return True

    import math_verify

    monkeypatch.setattr(math_verify, "verify", slow)
    started = time.perf_counter()
    assert answers_match("\\sqrt{5}", "\\sqrt{6}") is False
    assert time.perf_counter() - started < 2
