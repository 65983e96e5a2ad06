import pytest

from reer.tasks.categories import load_taxonomy
from reer.tasks.query_writing import QUERY_PROMPT_VERSION, finish_query, query_request, rounded_length, write_queries
from reer.tasks.records import Example

STORY = (
    "Marta started her shift at two, when the street outside the bakery was empty. She lit the ovens and "
    "slit open the first sack of flour of the week.\n\nInside it she found a note folded into a small square. "
    "It was written in pencil: whoever bakes with this, I hope your bread rises. My father grew this wheat."
)


def text_example(text: str, language: str = "en", category: str | None = "story") -> Example:
    return Example("id", "", text, "excerpt.txt", "whole file", category, language)


def test_the_request_is_prefilled_up_to_its_subject():
    request = query_request(text_example(STORY), load_taxonomy())
    assert request.prefill == "Write a short story of about 60 words about"
    assert request.temperature == 0.0 and "\n" in request.stop
    assert STORY[:100] in request.messages[0][1]
    zh = query_request(text_example("春天来了，小河边的柳树发芽了。" * 30, "zh", "poem"), load_taxonomy())
    assert zh.prefill == "请写一篇约400字的诗，主题是" and "下面是一篇文章" in zh.messages[0][1]
    unknown = query_request(text_example(STORY, category="keyword_writing"), load_taxonomy())
    assert unknown.prefill.startswith("Write a piece of about")


def test_rounded_length_and_finish_query():
    assert rounded_length("word " * 643, "en") == 600 and rounded_length("word " * 3, "en") == 10
    assert finish_query("Write a poem about", " the sea at night.", "en") == "Write a poem about the sea at night."
    assert finish_query("请写一篇约60字的诗，主题是", "春天。", "zh") == "请写一篇约60字的诗，主题是春天。"
    assert finish_query("Write a poem about", " .", "en") is None
    assert QUERY_PROMPT_VERSION.startswith("q1-")


@pytest.mark.model
def test_the_model_writes_a_request_for_a_text(fp32_model):
    (written,) = write_queries(fp32_model, [text_example(STORY)], load_taxonomy())
    assert written.query.startswith("Write a short story of about 60 words about ") and written.query.endswith(".")
    assert len(written.query) > len("Write a short story of about 60 words about ") + 3
    assert written.query_synthesized and written.query_prompt_version == QUERY_PROMPT_VERSION
    (again,) = write_queries(fp32_model, [text_example(STORY)], load_taxonomy())
    assert again.query == written.query  # greedy: the same text gets the same request


@pytest.mark.parametrize(
    "subject, language, ok",
    [
        ("the sea at night", "en", True),
        ("a one-sentence writing request", "en", False),
        ("the topic of the topic of the topic of the topic", "en", False),
        ("it", "en", False),
        ("春天", "zh", True),
    ],
)
def test_names_a_subject(subject, language, ok):
    from reer.tasks.query_writing import names_a_subject

    assert names_a_subject(subject, language) is ok
