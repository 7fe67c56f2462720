import pytest

from steer_cli.answers import answers_match, extract_answer, gold_answer


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
    ],
)
def test_extracts_the_most_explicit_final_answer(text, expected):
    assert extract_answer(text) == expected


def test_gold_answer_reads_the_gsm8k_marker():
    assert gold_answer("She sells 9 eggs.\n#### 18") == "18"
    assert gold_answer("#### 1,000") == "1000"


@pytest.mark.parametrize(
    "pred, gold, ok",
    [("18", "18", True), ("18.0", "18", True), ("1,000", "1000", True), ("\\frac{1}{2}", "0.5", True), ("17", "18", False), (None, "18", False)],
)
def test_numeric_match_is_exact(pred, gold, ok):
    assert answers_match(pred, gold) is ok
