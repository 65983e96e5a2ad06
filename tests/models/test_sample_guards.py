"""The sampling guards as each backend applies them: pure logic, no model."""

from reer.models.base import GenerationRequest
from reer.models.transformers_backend import SampleGuard
from reer.models.vllm_backend import copy_bad_words, held_back, sampling_options


def test_the_end_is_held_back_until_the_minimum_then_released():
    guard = SampleGuard(min_new=3, held=[0, 7], max_copied=0, grams={}, tail=[])
    assert guard.banned([]) == [0, 7] and guard.banned([5, 5]) == [0, 7]
    assert guard.banned([5, 5, 5]) == []


def test_the_copy_guard_bans_the_token_that_would_extend_a_copied_run():
    source = [10, 11, 12, 13, 14]
    grams = {tuple(source[j : j + 2]): [source[j + 2]] for j in range(len(source) - 2)}
    guard = SampleGuard(min_new=0, held=[], max_copied=2, grams=grams, tail=[99, 10])
    assert guard.banned([]) == []  # the tail (the pre-filled 10) alone is one token of a run
    assert guard.banned([11]) == [12]  # pre-filled 10, then 11: a third copied token is banned
    assert guard.banned([11, 20]) == []
    assert guard.banned([11, 20, 13, 14]) == []  # 13, 14 ends the source: nothing follows it


def test_vllm_cuts_a_stop_string_that_min_tokens_let_through():
    assert held_back("thinking </think> more", "length", ("</think>",)) == ("thinking ", "stop")
    assert held_back("no stop here", "eos", ("</think>",)) == ("no stop here", "eos")
    assert held_back("a\n\nb</refined>", "stop", ("</refined>", "\n\n")) == ("a", "stop")


def test_vllm_gets_min_tokens_and_the_copy_guard_as_bad_words():
    plain = GenerationRequest(messages=(("user", "x"),))
    assert sampling_options(plain) == {}
    source = "one two three four five six seven eight nine ten eleven twelve"
    guarded = GenerationRequest(
        messages=(("user", "x"),), min_new_tokens=500, max_new_tokens=100, copy_source=source, max_copied_tokens=8
    )
    options = sampling_options(guarded)
    assert options["min_tokens"] == 100  # never above max_tokens, which vLLM refuses
    assert options["bad_words"][0] == "one two three four five six seven" and len(options["bad_words"]) == 6
    assert copy_bad_words("too short", 8) == [] and copy_bad_words(source, 0) == []


def test_a_long_segment_lists_few_enough_phrases_for_vllm_and_still_bars_every_long_copy():
    words = [f"w{i}" for i in range(400)]
    phrases = copy_bad_words(" ".join(words), 8)
    assert len(phrases) <= 64  # two token sequences each: vLLM refuses more than 128
    n, starts = 7, {words.index(p.split()[0]) for p in phrases}
    stride = max(b - a for a, b in zip(sorted(starts), sorted(starts)[1:]))
    # Every run of n + stride - 1 words of the source holds a listed phrase whole.
    for j in range(len(words) - (n + stride - 1) + 1):
        assert any(j <= s and s + n <= j + n + stride - 1 for s in starts)


def test_the_repeat_guard_cuts_a_loop_where_it_would_start_again():
    guard = SampleGuard(min_new=0, held=[], max_copied=0, grams={}, tail=[], max_repeated=2)
    assert guard.banned([1, 2, 3]) == []
    assert guard.banned([1, 2, 3, 1]) == []
    assert guard.banned([1, 2, 3, 1, 2]) == [3]  # 1 2 was followed by 3: a third repeated token is banned
    assert guard.banned([1, 2, 3, 1, 2, 4, 2, 3]) == [1]
