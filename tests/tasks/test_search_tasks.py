"""Planning searches against a real store: trajectories named by the models' content, and references
that cannot be scored finished once, with a reason, instead of coming back every run."""

from __future__ import annotations

from reer.settings import SearchConfig
from reer.sql import read_sql
from reer.store import Store
from reer.tasks.ingest import select_pending
from reer.tasks.prompts import PROMPT_VERSION
from reer.tasks.records import Example
from reer.tasks.search_tasks import prepare_searches

CONFIG = SearchConfig(max_initial_tokens=40)  # thinking reserve: 104 tokens
GOOD = Example("good", "Write a note.", "A " * 60 + "\n\n" + "B " * 60, "notes.jsonl", "line 1", None, "en")
ONE_PIECE = Example("one-piece", "Write a line.", "Just one short answer.", "notes.jsonl", "line 2", None, "en")
TOO_LONG = Example("too-long", "Write a lot.", "C " * 200 + "\n\n" + "D " * 200, "notes.jsonl", "line 3", None, "en")


class PlanningModel:
    """Enough of a model to plan with: a name, a fingerprint, a word count for tokens."""

    context_window = 300  # GOOD fits with the reserve, TOO_LONG does not

    def __init__(self, model_id: str, fingerprint: str) -> None:
        self.model_id, self.fingerprint = model_id, fingerprint

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def render_chat(self, messages) -> str:
        return "U:" + messages[-1][1] + "\nA:"


def prepare(store, run_id, model, examples=(GOOD,)):
    return prepare_searches.fn(store, run_id, list(examples), CONFIG, model, model)


def pending(store, model) -> list[str]:
    examples = select_pending.fn(store, CONFIG, PROMPT_VERSION, model.fingerprint, model.fingerprint).examples
    return [e.example_id for e in examples]


def test_two_models_of_one_folder_name_get_their_own_trajectories(tmp_path):
    store = Store(tmp_path / "reer.duckdb")
    store.write("examples", [GOOD])
    first, other = PlanningModel("checkpoint-500", "a" * 16), PlanningModel("checkpoint-500", "b" * 16)
    (search,) = prepare(store, "run-1", first).searches
    ended = {"trajectory_id": search.item.trajectory_id, "run_id": "run-1", "status": "completed", "reason": "x"}
    store.write("outcomes", [ended])
    assert prepare(store, "run-2", first).skipped_done == 1 and pending(store, first) == []
    again = prepare(store, "run-3", other)  # same name, other weights: not the first model's work
    assert again.skipped_done == 0 and again.searches[0].item.trajectory_id != search.item.trajectory_id
    assert pending(store, other) == ["good"]
    rows = store.query("SELECT run_id, generator_model, generator_fingerprint, scorer_fingerprint FROM trajectories")
    assert sorted(rows.rows()) == [
        ("run-1", "checkpoint-500", "a" * 16, "a" * 16),
        ("run-2", "checkpoint-500", "a" * 16, "a" * 16),
        ("run-3", "checkpoint-500", "b" * 16, "b" * 16),
    ]
    store.close()


def test_a_reference_that_cannot_be_scored_is_finished_once_with_its_reason(tmp_path):
    store = Store(tmp_path / "reer.duckdb")
    examples = [GOOD, ONE_PIECE, TOO_LONG]
    store.write("examples", examples)
    model = PlanningModel("m", "f" * 16)
    first = prepare(store, "run-1", model, examples)
    assert first.rejected == 2 and len(first.searches) == 1 and pending(store, model) == ["good"]
    # Its fate in SQL: a trajectory row, a rejected outcome with the reason, one reject naming both.
    fates = store.query(
        "SELECT t.example_id, t.start, o.status, o.reason, r.trajectory_id = t.trajectory_id AS linked "
        "FROM trajectories t JOIN outcomes o USING (trajectory_id) JOIN rejects r USING (example_id) ORDER BY 1"
    ).rows()
    assert fates == [
        ("one-piece", "rejected", "rejected", "reference_single_segment", True),
        ("too-long", "rejected", "rejected", "reference_too_long", True),
    ]
    figures = store.query(read_sql("queries/run_summary"), run_id="run-1").to_dicts()[0]
    assert (figures["items"], figures["completed"], figures["rejected_in_search"]) == (3, 0, 2)
    second = prepare(store, "run-2", model, examples)  # the next night: nothing to reject again
    assert (second.rejected, second.skipped_done) == (0, 2)
    assert store.query("SELECT count(*) AS n FROM rejects")["n"][0] == 2
    store.close()
