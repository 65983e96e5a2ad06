from reer.tasks.prompts import (
    PROMPT_VERSION,
    PROMPTS,
    detect_language,
    initial_messages,
    kept_opening,
    parse_refined,
    pick_opener,
    refine_messages,
)
from reer.tasks.quality import cue_counts


def test_detects_chinese_and_english():
    assert detect_language("请写一篇关于秋天的散文，三百字左右。") == "zh"
    assert detect_language("Write a story about autumn.") == "en"
    assert detect_language("") == "en"


def test_chinese_queries_get_chinese_prompts_and_openers():
    ((role, text),) = initial_messages("写一首诗", "参考答案", "zh")
    assert role == "user" and "写作请求" in text and "参考答案" in text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in pick_opener("zh", 3))


def test_initial_prompt_holds_query_and_reference():
    ((_, text),) = initial_messages("Q-TEXT", "Y-TEXT", "en")
    assert "Q-TEXT" in text and "Y-TEXT" in text and "</think>" in text


def test_opener_depends_only_on_seed():
    assert pick_opener("en", 7) == pick_opener("en", 7)
    assert len({pick_opener("en", s) for s in range(50)}) > 1


def test_every_opener_carries_a_reflection_cue_that_survives_a_rewrite_of_its_paragraph():
    # The reflection_cues check counts what the prompts' cues open with; the opener pre-fills
    # one into every z(0), and the rewrite of the first paragraph keeps its opening words.
    for language, prompts in PROMPTS.items():
        for opener in prompts.openers:
            paragraph = opener + (
                " 的故事，读者是孩子。" * 3 if language == "zh" else " a story for a child, short and warm."
            )
            assert sum(cue_counts(kept_opening(paragraph, language), language).values()) == 1, opener


def test_refine_prompt_shows_refined_before_and_original_after():
    refined, original = ["R0", "R1", "R2"], ["O0", "O1", "O2"]
    ((_, text),) = refine_messages("q", "y", refined, 1, original, "en")
    assert "R0" in text and "O2" in text and "R1" in text and "O0" not in text


def test_prompt_version_is_stable_text():
    assert PROMPT_VERSION.startswith("v1-") and len(PROMPT_VERSION) == 11


def test_kept_opening_words():
    assert kept_opening("Now I think about the ending of it", "en") == "Now I think about"
    assert kept_opening("Short one", "en") == ""
    assert kept_opening("我想先写开头，然后", "zh") == "我想先写开头"


def test_parse_refined_takes_text_closed_by_tag_or_turn_end():
    assert parse_refined("Now I", " think the ending should land softly.", "stop") == (
        "Now I think the ending should land softly.",
        "ok",
    )
    assert parse_refined("", "The reader is a child who needs a calm ending.", "eos")[0].startswith("The reader")


def test_parse_refined_rejects_cut_or_empty_rewrites():
    assert parse_refined("Now I", " think and think and", "length") == (None, "no closing tag before the token limit")
    assert parse_refined("", "  ", "stop") == (None, "empty rewrite")
    assert parse_refined("", "<refined> ok", "stop") == (None, "empty rewrite")
