import math

import pytest

from reer.tasks.scoring import THINK_CLOSE, THINK_OPEN, score_logprobs, scoring_context, split_reference


def test_score_clips_each_logprob_to_minus_two_then_averages():
    s = score_logprobs([-0.5, -3.0, -1.0, -10.0])
    assert s.score == pytest.approx((0.5 + 2.0 + 1.0 + 2.0) / 4)
    assert s.nll == pytest.approx((0.5 + 3.0 + 1.0 + 10.0) / 4)
    assert s.ppl == pytest.approx(math.exp(s.nll))
    assert s.tokens == 4


def test_score_of_certain_tokens_is_zero():
    assert score_logprobs([0.0, -0.0]).score == 0.0


def test_clip_bound_is_a_setting():
    assert score_logprobs([-5.0], clip_min=-4.0).score == pytest.approx(4.0)


def test_score_needs_tokens():
    with pytest.raises(ValueError):
        score_logprobs([])


def test_reference_first_segment_is_context_rest_is_target():
    first, second, third = "x" * 120, "y" * 120, "z" * 120
    split = split_reference(f"{first}\n\n{second}\n\n{third}")
    assert split.context == first + "\n\n"
    assert split.target == f"{second}\n\n{third}"


def test_single_segment_reference_has_nothing_to_score():
    assert split_reference("one short paragraph") is None


def test_scoring_context_layout():
    split = split_reference("a" * 120 + "\n\n" + "b" * 120)
    text = scoring_context("<user>q</user>", "my thinking", split)
    assert text == "<user>q</user>" + THINK_OPEN + "my thinking" + THINK_CLOSE + "a" * 120 + "\n\n"
