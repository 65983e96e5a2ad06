"""The driver with scripted models: lanes, overlap, storing before the next request, errors and stops.

Pure control logic, so scripted models stand in for real ones; tests/models/test_served_backend.py and the
crash tests drive real models through the same driver.
"""

from __future__ import annotations

import threading
import time

import pytest

from reer.interrupts import StopRequested
from reer.models.base import Feeding, Generation, ModelUnavailable
from reer.settings import SearchConfig
from reer.tasks import driver as driver_module
from reer.tasks.driver import InFlight, drive
from reer.tasks.records import OutcomeRecord, RevisionRecord
from reer.tasks.scoring import split_reference
from reer.tasks.search import ItemSearch, ScoringNeed, SearchItem
from tests.tasks.test_search_machine import REFERENCE, ScriptedModel

SERVED_LIKE = Feeding(calls=8, per_item=True, engine=None)


class Watched(ScriptedModel):
    """A scripted model that declares its feeding, counts calls in flight, and can hold an item's generation."""

    def __init__(self, feeding: Feeding | None = None, hold: str | None = None):
        super().__init__(lambda seed, i: Generation(f" GOOD rewrite {seed}-{i} " + "x" * 40, "stop", 20))
        if feeding is not None:
            self.feeding = feeding
        self.hold, self.gate = hold, threading.Event()
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.log: list[tuple[str, str]] = []  # (call kind, query of each request's item)

    def _enter(self, kind: str, queries: list[str]) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.log.extend((kind, q) for q in queries)

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def generate(self, requests):
        queries = [r.messages[-1][1] for r in requests]
        self._enter("z(0)" if requests[0].prefill.startswith("<think>") else "rewrite", queries)
        try:
            if self.hold and any(self.hold in q for q in queries):
                assert self.gate.wait(timeout=20), "the held generation was never released"
            time.sleep(0.01)  # long enough for other items' calls to be in flight beside it
            return super().generate(requests)
        finally:
            self._leave()

    def score(self, requests):
        self._enter("score", [r.context for r in requests])
        try:
            time.sleep(0.01)
            return super().score(requests)
        finally:
            self._leave()


class Counted(ScriptedModel):
    """A scripted model fed like a server, that counts its calls and answers at once."""

    feeding = SERVED_LIKE

    def __init__(self):
        super().__init__(lambda seed, i: Generation(f" GOOD rewrite {seed}-{i} " + "x" * 40, "stop", 20))
        self.calls = 0

    def generate(self, requests):
        self.calls += 1
        return super().generate(requests)

    def score(self, requests):
        self.calls += 1
        return super().score(requests)


def searches_for(*queries: str, config: SearchConfig | None = None) -> list[ItemSearch]:
    config = config or SearchConfig(min_thinking_tokens=10, max_steps=2)
    model = ScriptedModel(None)
    return [
        ItemSearch(
            SearchItem(f"t-{q}", f"e-{q}", q, split_reference(REFERENCE), REFERENCE, "en", n),
            config,
            f"U:{q}\nA:",
            model.count_tokens,
        )
        for n, q in enumerate(queries)
    ]


def outcomes(records) -> dict[str, OutcomeRecord]:
    return {r.trajectory_id: r for r in records if isinstance(r, OutcomeRecord)}


def test_a_slow_generation_of_one_item_holds_back_no_other_items_scoring():
    generator, scorer = Watched(SERVED_LIKE, hold="slowly"), Watched(SERVED_LIKE)
    searches = searches_for("Write slowly.", "Write quickly.")
    records, stored = [], threading.Condition()

    def sink(batch):
        with stored:
            records.extend(batch)
            stored.notify_all()

    runner = threading.Thread(target=drive, args=(searches, generator, scorer, sink))
    runner.start()
    try:
        with stored:  # the quick item's whole search ends while the slow one is still generating z(0)
            finished = stored.wait_for(lambda: "t-Write quickly." in outcomes(records), timeout=20)
        assert finished, "the quick item waited for the slow item's generation"
        assert "t-Write slowly." not in outcomes(records) and generator.in_flight == 1
        assert sum(1 for kind, _ in scorer.log if kind == "score") >= 2  # z(0) and a step of candidates
    finally:
        generator.gate.set()
        runner.join(timeout=30)
    assert set(outcomes(records)) == {"t-Write slowly.", "t-Write quickly."}


def test_batched_feeding_sends_one_call_at_a_time_over_both_models():
    generator, scorer = Watched(SERVED_LIKE), Watched(SERVED_LIKE)
    shared = threading.Lock()
    calls = []

    def exclusive(call):
        def wrapped(requests):
            assert shared.acquire(blocking=False), "two calls were in flight at once"
            try:
                calls.append(len(requests))
                return call(requests)
            finally:
                shared.release()

        return wrapped

    generator.generate, scorer.score = exclusive(generator.generate), exclusive(scorer.score)
    records = []
    drive(searches_for("a", "b", "c"), generator, scorer, records.extend, feeding="batched")
    assert len(outcomes(records)) == 3
    assert calls[0] == 3  # the three z(0)s in one call, as the round-based driver sent them


def test_auto_feeding_overlaps_the_generator_and_the_scorer_and_says_how_busy_each_was():
    generator, scorer = Watched(SERVED_LIKE), Watched(SERVED_LIKE)
    records = []
    traffic = drive(searches_for(*"abcdef"), generator, scorer, records.extend)
    assert len(outcomes(records)) == 6
    assert generator.most_in_flight > 1 and scorer.most_in_flight > 1  # items' calls overlap
    busy = traffic.busy()
    assert set(busy) == {"generator", "scorer"} and all(0 < share <= 1 for share in busy.values())
    assert traffic.timeline() and {"seconds", "generator", "scorer"} == set(traffic.timeline()[0])


class CountedSearch(ItemSearch):
    """An ItemSearch that counts how often anything reads its need."""

    reads = 0

    @property
    def need(self):
        CountedSearch.reads += 1
        return self._need

    @need.setter
    def need(self, value):
        self._need = value


def test_a_send_reads_only_the_items_that_are_ready_not_every_item(monkeypatch):
    monkeypatch.setattr(CountedSearch, "reads", 0)
    config = SearchConfig(min_thinking_tokens=10, max_steps=2)
    searches = [
        CountedSearch(
            SearchItem(f"t-{n}", f"e-{n}", f"q{n}", split_reference(REFERENCE), REFERENCE, "en", n),
            config,
            f"U:q{n}\nA:",
            ScriptedModel(None).count_tokens,
        )
        for n in range(300)
    ]
    generator, scorer = Counted(), Counted()
    records = []
    drive(searches, generator, scorer, records.extend)
    assert len(outcomes(records)) == 300
    calls = generator.calls + scorer.calls
    # Reading every item at each send costs items x sends (here ~10 reads a call, growing with the
    # items); the ready index reads an item a bounded number of times per transition (~4 a call).
    assert CountedSearch.reads < 6 * calls, (CountedSearch.reads, calls)


def test_every_step_is_stored_before_the_items_next_generation_goes_out():
    generator, scorer = Watched(SERVED_LIKE), Watched(SERVED_LIKE)
    stored: list = []
    checked = []  # (trajectory, refine generations sent before this one, its records stored by then)
    original = generator.generate

    def generate(requests):
        for r in requests:
            if not r.prefill.startswith("<think>"):  # a rewrite: z(0) and every earlier step must be stored
                trajectory = "t-" + r.messages[-1][1].split("REQUEST:\n")[1].split("\n")[0]
                earlier = sum(1 for t, _, _ in checked if t == trajectory)
                checked.append((trajectory, earlier, sum(1 for x in stored if x.trajectory_id == trajectory)))
        return original(requests)

    generator.generate = generate
    drive(searches_for(*"abcd"), generator, scorer, stored.extend)
    assert len(outcomes(stored)) == 4 and checked
    for trajectory, earlier, records in checked:
        assert records >= 1 + earlier, f"{trajectory}: a rewrite went out before its earlier steps were stored"


def test_a_model_error_lets_the_other_calls_return_and_be_applied_then_raises_and_a_retry_finishes():
    generator, scorer = Watched(SERVED_LIKE, hold="slow"), Watched(SERVED_LIKE)
    failing = {"on": True}
    original = scorer.score

    def score(requests):
        if failing["on"] and any("fails" in r.context for r in requests):
            generator.gate.set()  # the slow item's generation returns after this error
            raise ModelUnavailable("the scorer went away")
        return original(requests)

    scorer.score = score
    failed_item, slow_item = searches = searches_for("it fails", "slow item")
    records = []
    with pytest.raises(ModelUnavailable, match="went away"):
        drive(searches, generator, scorer, records.extend)
    # The failed scoring was never applied; the generation that returned after the error was.
    assert failed_item.best is None and isinstance(failed_item.need, ScoringNeed)
    assert isinstance(slow_item.need, ScoringNeed)
    failing["on"] = False
    drive(searches, generator, scorer, records.extend)  # what Prefect's retry does: the same searches again
    assert set(outcomes(records)) == {"t-it fails", "t-slow item"}
    assert sum(1 for kind, _ in generator.log if kind == "z(0)") == 2  # neither z(0) was generated twice


def test_a_stop_with_many_calls_in_flight_scores_what_was_generated_and_samples_nothing_more():
    generator, scorer = Watched(SERVED_LIKE), Watched(SERVED_LIKE)
    records = []
    with pytest.raises(StopRequested):
        drive(searches_for(*"abc"), generator, scorer, records.extend, stop_requested=lambda: bool(records))
    initial = [r for r in records if isinstance(r, RevisionRecord) and r.kind == "initial"]
    assert len(initial) == 3 and all(r.status == "scored" for r in initial)
    assert [kind for kind, _ in generator.log] == ["z(0)"] * 3  # and no rewrite


def test_in_flight_keeps_busy_seconds_and_a_bounded_timeline(monkeypatch):
    now = {"t": 100.0}
    monkeypatch.setattr(driver_module.time, "monotonic", lambda: now["t"])
    monkeypatch.setattr(InFlight, "MAX_BUCKETS", 4)
    traffic = InFlight()
    traffic.change("generator", 2, 1)  # t=0: two sequences in one call
    now["t"] = 101.0
    traffic.change("scorer", 1, 1)
    now["t"] = 102.0
    traffic.change("scorer", -1, -1)
    now["t"] = 103.0
    assert traffic.timeline() == [
        {"seconds": 0.0, "generator": 2.0, "scorer": 0.0},
        {"seconds": 1.0, "generator": 2.0, "scorer": 1.0},
    ]
    traffic.end()
    assert traffic.busy() == {"generator": 1.0, "scorer": round(1 / 3, 4)}
    now["t"] = 110.0  # ten buckets of one second do not fit in four: they merge, twice
    traffic.end()
    assert traffic.width == 4.0 and len(traffic.timeline()) == 3
    assert traffic.timeline()[0] == {"seconds": 0.0, "generator": 2.0, "scorer": 0.25}
