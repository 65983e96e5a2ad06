import pytest

from reer.tasks.categories import (
    alias_key,
    assign_category,
    given_category,
    label_scores,
    load_taxonomy,
    method_version,
    pick_category,
    softmax,
)
from reer.tasks.records import Example


def test_the_taxonomy_has_25_categories_in_groups_with_disjoint_names():
    taxonomy = load_taxonomy()
    assert len(taxonomy.categories) == 25 and len({c.category for c in taxonomy.categories}) == 25
    assert {c.group for c in taxonomy.categories} == {
        "creative",
        "personal",
        "academic",
        "journalism",
        "functional",
        "education",
    }
    owners: dict[str, str] = {}
    for c in taxonomy.categories:
        for name in {alias_key(n) for n in (c.category, c.label, *c.aliases)}:
            assert owners.setdefault(name, c.category) == c.category, f"{name!r} names two categories"


def test_the_store_seeds_the_same_taxonomy(tmp_path):
    from reer.store import Store

    store = Store(tmp_path / "reer.duckdb")
    stored = store.query("SELECT category, label FROM categories ORDER BY category").rows()
    store.close()
    assert stored == sorted((c.category, c.label) for c in load_taxonomy().categories)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("story_writing", ("story", "story_writing", "mapped")),
        ("Roleplaying-Writing", ("roleplay", "Roleplaying-Writing", "mapped")),
        ("A Poem", ("poem", "A Poem", "mapped")),
        ("新闻报道", ("news_report", "新闻报道", "mapped")),
        ("keyword_writing", ("keyword_writing", "keyword_writing", "given")),  # not a genre: kept as given
        ("  ", (None, None, None)),
        (None, (None, None, None)),
    ],
)
def test_a_given_category_maps_onto_the_taxonomy_or_is_kept(given, expected):
    assert given_category(given, load_taxonomy()) == expected


def test_pick_category_and_softmax():
    taxonomy = load_taxonomy()
    scores = [-10.0] * 25
    scores[1] = -1.0
    category, confidence = pick_category(scores, taxonomy)
    assert category == taxonomy.categories[1].category and confidence == pytest.approx(softmax(scores)[1])
    assert sum(softmax(scores)) == pytest.approx(1.0)


def example(query: str, text: str) -> Example:
    language = "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en"
    return Example("id", query, text, "test", "line 1", None, language)


UNAMBIGUOUS = [
    (
        "poem",
        "",
        "Roses bloom along the wall,\nsoft and red in morning light;\n"
        "I hear the distant blackbird call\nand wait for you to come tonight.",
    ),
    ("poem", "", "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"),
    (
        "argumentative_essay",
        "Write an argumentative essay on whether homework should be banned.",
        "Homework should not be banned. Although critics argue that it causes stress, research shows that "
        "moderate homework improves academic achievement. Furthermore, it teaches students responsibility.",
    ),
    (
        "story",
        "Write a short story about a dragon.",
        "Once upon a time, in a kingdom far away, a small dragon named Ember lived in a cave above the village. "
        "Every night she watched the lights below and wished she had a friend.",
    ),
]


@pytest.mark.model
@pytest.mark.parametrize("expected, query, text", UNAMBIGUOUS)
def test_the_model_assigns_unambiguous_texts(fp32_model, expected, query, text):
    taxonomy = load_taxonomy()
    calls = fp32_model.stats.scoring_calls
    assigned = assign_category(fp32_model, example(query, text), taxonomy, method_version(taxonomy))
    assert fp32_model.stats.scoring_calls == calls + 1  # all 25 labels in one batched call
    assert assigned.category == expected and assigned.category_source == "model"
    assert 1 / 25 < assigned.category_confidence <= 1 and assigned.category_method.startswith("total-logprob-v1-")


@pytest.mark.model
def test_a_given_category_is_not_rescored(fp32_model):
    taxonomy = load_taxonomy()
    given = Example("id", "q", "text", "test", "line 1", "poem", "en", category_source="mapped")
    assert assign_category(fp32_model, given, taxonomy, method_version(taxonomy)) is given


@pytest.mark.model
def test_label_scores_are_total_log_probabilities(fp32_model):
    from reer.models.base import ScoreRequest
    from reer.tasks.categories import classifier_context

    taxonomy = load_taxonomy()
    scores = label_scores(fp32_model, "", "A poem.", taxonomy)
    (single,) = fp32_model.score(
        [ScoreRequest(classifier_context(fp32_model, "", "A poem."), " " + taxonomy.categories[0].label)]
    )
    assert scores[0] == pytest.approx(sum(single), abs=1e-4) and all(s < 0 for s in scores)
