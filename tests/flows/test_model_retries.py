"""A model that stops answering mid-run: Prefect retries the search with backoff, counts it, and
the run goes on from its stored steps; when the model stays away the run fails in one line,
keeping every step it stored."""

from __future__ import annotations

import json

import pytest

from reer.models.base import ModelUnavailable
from tests.conftest import HOME, short_eqbench_items, stored_rows

pytestmark = [pytest.mark.model, pytest.mark.prefect]

K = 2
SEARCH = dict(max_initial_tokens=160, max_refine_tokens=32, max_steps=1, k=K, seed=1, min_thinking_tokens=40)


class UnansweringGenerator:
    """The real model, except that the generation calls named in `failing` (1 = the first) fail
    as a timed-out server's would."""

    def __init__(self, model, failing: set[int]) -> None:
        self.model, self.failing, self.calls = model, failing, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, requests):
        self.calls += 1
        if self.calls in self.failing:
            raise ModelUnavailable("generator at http://127.0.0.1:9/v1 did not answer after 3 tries (timed out)")
        return self.model.generate(requests)


def run_with(generator, tmp_path, fp32_model, monkeypatch, retries: int):
    from reer.flows import synthesize as module

    monkeypatch.setattr(module, "load_models", lambda settings: (generator, fp32_model))
    options = {
        "db": str(tmp_path / "reer.duckdb"),
        "out": str(tmp_path / "out"),
        "home": str(HOME),
        "dtype": "float32",
        "model_retries": retries,
        "retry_backoff_seconds": 0.2,
        "search": SEARCH,
    }
    return module.synthesize(inputs=[str(short_eqbench_items(tmp_path))], options=options), options["db"]


def test_a_model_that_stops_answering_once_is_retried_and_counted(tmp_path, fp32_model, monkeypatch):
    generator = UnansweringGenerator(fp32_model, failing={2})  # the first refinement, after z(0) is stored
    summary, db = run_with(generator, tmp_path, fp32_model, monkeypatch, retries=2)
    assert summary.model_retries == 1
    retries = stored_rows(db, "SELECT detail FROM run_events WHERE status = 'retrying'")
    assert [json.loads(r["detail"]) for r in retries] == [{"attempt": 2, "task": "search_examples"}]
    assert stored_rows(db, "SELECT status FROM run_overview") == [{"status": "completed"}]
    # The retry went on from the stored steps: nothing stored twice, no step half stored.
    assert (
        stored_rows(
            db,
            # k draws a step, 2k when none of the first k was usable and the step was drawn again
            f"SELECT trajectory_id, step FROM revisions WHERE kind = 'candidate' GROUP BY ALL HAVING count(*) % {K} <> 0",
        )
        == []
    )
    assert stored_rows(db, "SELECT count(*) AS n FROM outcomes")[0]["n"] == 2
    assert generator.calls >= 3  # z(0), the failed call, its retry


def test_a_model_that_stays_away_fails_the_run_in_one_line_and_keeps_its_steps(tmp_path, fp32_model, monkeypatch):
    generator = UnansweringGenerator(fp32_model, failing=set(range(2, 100)))
    with pytest.raises(ModelUnavailable) as failure:
        run_with(generator, tmp_path, fp32_model, monkeypatch, retries=1)
    assert "\n" not in str(failure.value)
    db = str(tmp_path / "reer.duckdb")
    assert stored_rows(db, "SELECT status FROM run_overview") == [{"status": "failed"}]
    assert len(stored_rows(db, "SELECT * FROM run_events WHERE status = 'retrying'")) == 1
    # Both items' z(0) were stored (one scored, one rejected) before the model went away: they stay.
    assert stored_rows(db, "SELECT count(*) AS n FROM revisions WHERE kind = 'initial'")[0]["n"] == 2
    assert (
        stored_rows(db, "SELECT count(*) AS n FROM revisions WHERE kind = 'initial' AND status = 'scored'")[0]["n"] >= 1
    )
    assert generator.calls == 3  # z(0), the failing call, and the one retry
