"""The driver: keeps every model fed with the searches' needs, and stores each transition before the next.

There are no rounds. Each model sits in a lane that takes as many calls at once as its backend
declares (`Feeding`): a served model takes many small calls, one item's need each, so a slow
generation of one item holds back nobody else; an in-process engine takes one batched call at a
time, which is how it runs fastest on a CPU. When a call returns, its items' transitions are
applied, and their records reach the sink in one transaction per short interval; only then does an
item's next need go out. So the store always holds every transition that any later request
depends on, and a crash or a model error strands nothing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reer.kill_points import kill_point
from reer.models.base import Feeding, LanguageModel
from reer.tasks.search import GenerationNeed, ItemSearch, Record, ScoringNeed, VerifyNeed

Role = Literal["generator", "scorer", "verifier"]
FeedingMode = Literal["auto", "batched"]
NEEDS: dict[Role, type] = {"generator": GenerationNeed, "scorer": ScoringNeed, "verifier": VerifyNeed}
ROLE_OF: dict[type, Role] = {need: role for role, need in NEEDS.items()}
# Where a lane's calls are shared: verifications and scorings first, since they finish steps.
PRIORITY: tuple[Role, ...] = ("verifier", "scorer", "generator")
KILL_POINTS: dict[Role, str] = {"generator": "generated", "scorer": "scored", "verifier": "verified"}


BATCHED = Feeding()  # one call at a time over every model, each as large as allowed: the rounds' pattern


def feeding_of(model: LanguageModel, mode: FeedingMode) -> Feeding:
    """What `model` declares (models that declare nothing are fed in batches), unless `mode` forces batches."""
    declared = getattr(model, "feeding", None)
    return declared if mode == "auto" and isinstance(declared, Feeding) else BATCHED


class InFlight:
    """Sequences each model has in flight over time: busy seconds, and a bounded timeline of means.

    The timeline keeps at most `MAX_BUCKETS` buckets of equal width; when it would grow past
    them, neighbours merge and the width doubles, so a run of any length costs the same memory.
    """

    MAX_BUCKETS = 240

    def __init__(self, width: float = 1.0) -> None:
        self.started = time.monotonic()
        self.width = width
        self.current: dict[str, int] = {}  # sequences in flight, per model
        self.calls: dict[str, int] = {}
        self.busy_seconds: dict[str, float] = {}
        self.areas: list[dict[str, float]] = []  # sequence-seconds per bucket and model
        self._last = 0.0
        self.ended: float | None = None

    def change(self, role: str, sequences: int, calls: int) -> None:
        """`role` sends (positive) or gets back (negative) `calls` calls of `sequences` sequences."""
        self._advance(time.monotonic() - self.started)
        if role not in self.current:
            self.current[role], self.calls[role], self.busy_seconds[role] = 0, 0, 0.0
            for area in self.areas:
                area[role] = 0.0
        self.current[role] += sequences
        self.calls[role] += calls

    def end(self) -> None:
        self._advance(time.monotonic() - self.started)
        self.ended = self._last

    def figures(self) -> dict:
        """What a run summary keeps: each model's busy fraction, and sequences in flight over time."""
        return {
            "busy": self.busy(),
            "in_flight": self.timeline(),
            "in_flight_seconds": self.width,
            "seconds": round(self.seconds, 3),
        }

    def _advance(self, now: float) -> None:
        while self._last < now:
            index = int(self._last // self.width)
            upto = min(now, (index + 1) * self.width)
            while len(self.areas) <= index:
                self.areas.append(dict.fromkeys(self.current, 0.0))
            for role, n in self.current.items():
                self.areas[index][role] += n * (upto - self._last)
                if self.calls[role]:
                    self.busy_seconds[role] += upto - self._last
            self._last = upto
            if len(self.areas) > self.MAX_BUCKETS:
                self._coarsen()

    def _coarsen(self) -> None:
        pairs = [self.areas[i : i + 2] for i in range(0, len(self.areas), 2)]
        self.areas = [{r: sum(b[r] for b in pair) for r in self.current} for pair in pairs]
        self.width *= 2

    @property
    def seconds(self) -> float:
        return self.ended if self.ended is not None else time.monotonic() - self.started

    def busy(self) -> dict[str, float]:
        """Each model's busy fraction: the share of the wall time with at least one of its calls in flight."""
        wall = self.seconds
        return {r: round(s / wall, 4) if wall else 0.0 for r, s in self.busy_seconds.items()}

    def timeline(self) -> list[dict[str, float]]:
        """Mean sequences in flight per model, one row per bucket: {"seconds": bucket start, model: mean}."""
        return [
            {"seconds": round(i * self.width, 3), **{r: round(a / self.width, 3) for r, a in area.items()}}
            for i, area in enumerate(self.areas)
        ]


@dataclass
class Call:
    role: Role
    searches: list[ItemSearch]
    sequences: int


@dataclass
class Lane:
    """The calls one engine takes at once, and the roles that send to it."""

    feeding: Feeding
    roles: list[Role] = field(default_factory=list)
    in_flight: int = 0


class Driver:
    """One drive over many searches: what is in flight, what waits for the store, what may go out."""

    def __init__(
        self,
        searches: Iterable[ItemSearch],
        models: dict[Role, LanguageModel],
        sink: Callable[[list[Record]], None],
        *,
        generation_rows: int,
        feeding: FeedingMode,
        store_seconds: float,
        store_records: int,
        on_batch: Callable[[int, int], None] | None,
        stop_requested: Callable[[], bool],
        traffic: InFlight | None,
    ) -> None:
        pending = [s for s in searches if not s.done]
        self.total, self.finished = len(pending), 0
        self.models, self.sink = models, sink
        self.generation_rows, self.store_seconds, self.store_records = generation_rows, store_seconds, store_records
        self.on_batch, self.stop_requested = on_batch, stop_requested
        self.lanes: dict[Role, Lane] = {}
        shared: dict[object, Lane] = {}
        for role in PRIORITY:
            model = models[role]
            fed = feeding_of(model, feeding)
            key = fed.engine if fed.engine is not None else id(model)
            lane = shared.setdefault(key, Lane(fed))
            if role not in lane.roles:
                lane.roles.append(role)
            self.lanes[role] = lane
        # A model that plays two roles (the scorer verifying its own acceptances) is one model to watch.
        self.watched: dict[Role, str] = {"generator": "generator", "scorer": "scorer"}
        self.watched["verifier"] = "scorer" if models["verifier"] is models["scorer"] else "verifier"
        self.traffic = traffic if traffic is not None else InFlight()
        # Searches whose need may be sent, by the role it needs, first ready first: a send reads only
        # these, never every item (a shard may hold tens of thousands).
        self.ready: dict[Role, dict[int, ItemSearch]] = {role: {} for role in NEEDS}
        self.make_ready(pending)
        self.results: queue.Queue[tuple[Call, object, BaseException | None]] = queue.Queue()
        self.calls = 0
        self.waiting: list[ItemSearch] = []  # transitions applied, records not yet stored
        self.records: list[Record] = []
        self.since: float | None = None  # when the oldest unstored record arrived
        self.error: BaseException | None = None
        self.stopping = False

    # -- sending ------------------------------------------------------------------------------
    def send(self) -> None:
        """Fill every lane that has room, its roles in priority order."""
        for lane in {id(lane): lane for lane in self.lanes.values()}.values():
            for role in sorted(lane.roles, key=PRIORITY.index):
                if role == "generator" and self.stopping:
                    continue  # a stop lets what was generated be scored, and samples nothing new
                while lane.in_flight < lane.feeding.calls:
                    batches = self.take(role, lane, lane.feeding.calls - lane.in_flight)
                    for batch in batches:
                        self.submit(role, lane, batch)
                    if not batches or lane.feeding.per_item:  # per item, one pass took all there was
                        break

    def take(self, role: Role, lane: Lane, free: int) -> list[list[ItemSearch]]:
        """The searches of the next `free` calls for `role`, in one pass: one each (per item), or one batch.

        One pass over the ready searches whatever the number of calls: a served lane fills hundreds of calls at once.
        """
        need, model, ready = NEEDS[role], self.models[role], self.ready[role]
        batches: list[list[ItemSearch]] = []
        rows = 0
        for s in list(ready.values()):
            n = s.need.request.n if role == "generator" else len(s.need.requests)
            if not lane.feeding.per_item and role == "generator" and batches and rows + n > self.generation_rows:
                break
            refused = overflowing(s, model)
            if refused:
                self.keep(refused)
            del ready[id(s)]
            if not isinstance(s.need, need) or s.done:  # refused outright: its records wait for the store
                self.waiting.append(s)
                continue
            if lane.feeding.per_item or not batches:
                batches.append([s])
            else:
                batches[0].append(s)
            rows += n
            if lane.feeding.per_item and len(batches) == free:
                break
        return batches

    def submit(self, role: Role, lane: Lane, batch: list[ItemSearch]) -> None:
        model = self.models[role]
        if role == "generator":
            requests = [s.need.request for s in batch]
            sequences = sum(r.n for r in requests)
            work = lambda: model.generate(requests)  # noqa: E731 - the thread's body
        else:
            requests = [r for s in batch for r in s.need.requests]
            sequences = len(requests)
            work = lambda: model.score(requests)  # noqa: E731
        call = Call(role, batch, sequences)
        lane.in_flight += 1
        self.calls += 1
        self.traffic.change(self.watched[role], sequences, 1)

        def run() -> None:
            try:
                self.results.put((call, work(), None))
            except BaseException as error:  # noqa: BLE001 - handed to the driver's thread
                self.results.put((call, None, error))

        # Daemon threads: a second Ctrl-C ends the process at once instead of waiting for a model call.
        threading.Thread(target=run, name=f"reer-{role}", daemon=True).start()

    def make_ready(self, searches: Iterable[ItemSearch]) -> None:
        """Let these searches' needs go out, each to the role that serves it."""
        for s in searches:
            role = ROLE_OF.get(type(s.need))
            if role is not None and not s.done:
                self.ready[role][id(s)] = s

    # -- receiving ------------------------------------------------------------------------------
    def receive(self, call: Call, result, error: BaseException | None) -> None:
        """Apply a returned call to its searches, whose records then wait for the store."""
        self.lanes[call.role].in_flight -= 1
        self.calls -= 1
        self.traffic.change(self.watched[call.role], -call.sequences, -1)
        if error is not None:
            # Its searches keep their need, unapplied: a retry of the drive sends it again.
            self.error = self.error or error
            self.make_ready(call.searches)
            return
        kill_point(KILL_POINTS[call.role])
        if call.role == "generator":
            records = [r for s, generations in zip(call.searches, result) for r in s.on_generated(generations)]
        else:
            handler = ItemSearch.on_scored if call.role == "scorer" else ItemSearch.on_verified
            records = answer(call.searches, result, handler)
        self.keep(records)
        self.waiting.extend(call.searches)

    def keep(self, records: list[Record]) -> None:
        if records and self.since is None:
            self.since = time.monotonic()
        self.records.extend(records)

    # -- storing --------------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether to store now: the interval or the size is reached, or an engine would idle waiting for it."""
        if not (self.records or self.waiting):
            return False
        if not self.calls or len(self.records) >= self.store_records:
            return True
        if self.since is not None and time.monotonic() - self.since >= self.store_seconds:
            return True
        return any(self.lanes[role].in_flight == 0 for role in self.needed_by_waiting())

    def needed_by_waiting(self) -> set[Role]:
        roles = set()
        for s in self.waiting:
            for role, need in NEEDS.items():
                if isinstance(s.need, need):
                    roles.add(role)
        return roles

    def store(self) -> None:
        """Store every applied transition in one transaction; their searches may then go on."""
        if self.records:
            self.sink(self.records)
            kill_point("stored")
        self.make_ready(self.waiting)
        self.finished += sum(s.done for s in self.waiting)  # a search is done in one transition, waits once
        self.records, self.waiting, self.since = [], [], None
        if self.on_batch:
            self.on_batch(self.finished, self.total)
        if self.stop_requested():
            self.stopping = True

    def wait_seconds(self) -> float | None:
        if self.since is None:
            return None
        return max(0.0, self.store_seconds - (time.monotonic() - self.since))

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> InFlight:
        from reer.interrupts import StopRequested

        while True:
            if self.error is None:
                self.send()
            if not self.calls:
                if self.records or self.waiting:
                    self.store()
                    continue
                break
            try:
                self.receive(*self.results.get(timeout=self.wait_seconds()))
                while True:  # everything else that has returned meanwhile, before deciding to store
                    self.receive(*self.results.get_nowait())
            except queue.Empty:
                pass
            if self.due():
                self.store()
        self.traffic.end()
        if self.error is not None:
            raise self.error
        if self.finished < self.total:
            raise StopRequested
        return self.traffic


def drive(
    searches: Iterable[ItemSearch],
    generator: LanguageModel,
    scorer: LanguageModel,
    sink: Callable[[list[Record]], None],
    *,
    verifier: LanguageModel | None = None,
    generation_rows: int = 32,
    feeding: FeedingMode = "auto",
    store_seconds: float = 0.2,
    store_records: int = 1024,
    on_batch: Callable[[int, int], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    traffic: InFlight | None = None,
) -> InFlight:
    """Run many searches to completion, keeping each model as busy as its backend allows; what was in flight.

    Each model gets calls as its backend declares (`Feeding`; `feeding="batched"` forces one
    call at a time over all models, each up to `generation_rows` sampled sequences and every
    pending scoring, which is how the round-based driver fed them). An item's records reach the
    sink before its next request goes out, grouped into one transaction per `store_seconds` or
    `store_records`, or at once when an engine would otherwise wait for them. A model error stops
    new calls, lets those in flight return and be stored, then raises: nothing is stranded.
    Once `stop_requested()` says so, nothing new is sampled, what was sampled is scored and
    verified and stored, and StopRequested is raised. Every request is checked against its
    model's window first: one that cannot fit is never sent (`ItemSearch.on_overflow`).
    Verifications (the float32 re-scoring a search asks for before it accepts) go to `verifier`
    (default: the scorer). What each model had in flight is counted in `traffic` (default: a new one).
    """
    models: dict[Role, LanguageModel] = {"generator": generator, "scorer": scorer, "verifier": verifier or scorer}
    driver = Driver(
        searches,
        models,
        sink,
        generation_rows=generation_rows,
        feeding=feeding,
        store_seconds=store_seconds,
        store_records=store_records,
        on_batch=on_batch,
        stop_requested=stop_requested,
        traffic=traffic,
    )
    return driver.run()


def answer(searches: list[ItemSearch], logprobs: list[list[float]], handler) -> list[Record]:
    """Hand each search its share of one call's results, in the order its requests were sent; their records."""
    records: list[Record] = []
    offset = 0
    for s in searches:
        n = len(s.need.requests)
        records.extend(handler(s, logprobs[offset : offset + n]))
        offset += n
    return records


def overflowing(search: ItemSearch, model: LanguageModel) -> list[Record]:
    """Check every request of the search's need against the model's window; what refusing the misfits emits."""
    need = search.need
    requests: Sequence = [need.request] if isinstance(need, GenerationNeed) else need.requests
    tokens = [model.request_tokens(r) for r in requests]
    window = model.context_window
    if all(n <= window for n in tokens):
        return []
    return search.on_overflow(tokens, window)
