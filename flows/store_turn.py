"""A deployment run waits its turn for the store instead of failing: DuckDB admits one writer per file.

A DuckLake store (REER_DB=ducklake:...) admits many writers: its runs never queue.

Deployment runs of one store file queue on a Prefect global concurrency limit of one slot, named
after the file (the dashboard's Concurrency page shows who holds it and the run's log says it
waits). A writer outside the queue (a `reer run` at a terminal, a notebook) is waited for too,
up to `store_wait_seconds`. Runs started at a terminal do not queue: they are refused at once,
in one line, as before.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, suppress
from pathlib import Path

from reer.ids import stable_id
from reer.lake import is_lake
from reer.settings import Settings
from reer.store import Store, StoreBusy

POLL_SECONDS = 15.0  # between two tries to open a store that a writer outside the queue holds
LEASE_SECONDS = 300.0  # a killed holder's slot frees itself after this (Prefect renews live leases)


def slot_name(db: Path) -> str:
    """The concurrency limit that queues the writers of one store file (Prefect names: no '/')."""
    return f"reer-store-{stable_id(Path(db).resolve())[:12]}"


def in_deployment() -> bool:
    """Whether this flow run was created from a deployment (a schedule, the dashboard, the API)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def ensure_slot(name: str) -> int:
    """Create the one-slot limit `name` if the server lacks it; returns how many slots are taken now."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).active_slots
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it meanwhile
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            return client.read_global_concurrency_limit_by_name(name).active_slots


def wait_for_writer(db: Path, wait_seconds: float, say, poll_seconds: float = POLL_SECONDS) -> Store:
    """Open the store as its writer, retrying while another process holds it, for up to `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    said = 0.0
    while True:
        try:
            return Store(db)
        except StoreBusy as busy:
            if time.monotonic() + poll_seconds > deadline:
                raise StoreBusy(f"{busy} (waited {wait_seconds:.0f} s, store_wait_seconds)") from None
            if time.monotonic() - said >= 60:  # one line a minute, not one per poll
                say(f"waiting for the store: {busy}")
                said = time.monotonic()
            time.sleep(poll_seconds)


def open_store(settings: Settings, queue: bool | None = None) -> Store:
    """The flow run's store; a deployment run (or `queue`) first waits for its turn, then for any other writer."""
    if is_lake(settings.db) or not (in_deployment() if queue is None else queue):
        # A lake admits many writers: nobody queues. At a terminal, a held file is refused in one line at once.
        return Store(settings.db)
    from prefect.concurrency.sync import concurrency
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    name = slot_name(settings.db)
    if ensure_slot(name):
        logger.info(f"waiting for the store {settings.db}: another run holds its slot {name}")
    turn = ExitStack()
    # Not strict about renewals: a run hours long must not die for one missed lease renewal.
    turn.enter_context(
        concurrency(name, occupy=1, lease_duration=LEASE_SECONDS, strict=True, raise_on_lease_renewal_failure=False)
    )
    try:
        store = wait_for_writer(settings.db, settings.store_wait_seconds, logger.info)
    except BaseException:
        turn.close()
        raise
    store.release_on_close(turn.close)
    return store
