"""The search on many workers: pending trajectories split into shards, one Ray task per shard, through Prefect.

`reer run --workers N` (REER_WORKERS) with N > 1 hashes each planned trajectory's id into one of N
shards and runs the `search-shards` flow on prefect-ray's RayTaskRunner: a local Ray cluster by
default, or the one at `--ray-address` / RAY_ADDRESS. Each shard task, in its Ray worker, opens the
store, loads its own models, resumes its items from their stored steps and drives them with the
same batching driver, storing every transition itself. A worker that dies is Ray's to retry: the
retried task plans its items again and carries on from what was stored. Needs a store that several
processes write: a DuckLake (`--db ducklake:sqlite:PATH` or `ducklake:postgres:CONNINFO`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from reer.ids import stable_id
from reer.kill_points import KILL_POINT_VARIABLES
from reer.settings import Settings

# Ray runs a shard again this many times when its worker process dies (a kill, an OOM, a lost node).
WORKER_RETRIES = 3
GPU_BACKENDS = {"vllm"}  # backends that put a model on this worker's GPU; `served` only talks HTTP


class WorkersNeedLake(ValueError):
    """Several workers were asked for on a store that admits one writer."""


def shard_of(trajectory_id: str, workers: int) -> int:
    """The shard a trajectory belongs to: a stable hash of its id, the same in every run and process."""
    return int(stable_id("shard", trajectory_id), 16) % workers


def split_into_shards(pending: dict[str, str], workers: int) -> list[list[str]]:
    """Example ids of the pending trajectories (example id -> trajectory id) in `workers` shards; none empty."""
    shards: list[list[str]] = [[] for _ in range(workers)]
    for example_id, trajectory_id in pending.items():
        shards[shard_of(trajectory_id, workers)].append(example_id)
    return [shard for shard in shards if shard]


def worker_resources(settings: Settings) -> dict[str, Any]:
    """What one shard asks Ray for: a GPU when a role runs vLLM in-process, else CPU cores for torch."""
    gpu = any(settings.role_backend(role) in GPU_BACKENDS for role in ("generator", "scorer"))
    if gpu:
        return {"num_cpus": 1, "num_gpus": settings.vllm.tensor_parallel_size}
    return {"num_cpus": settings.threads or 1}


def worker_settings(settings: Settings) -> Settings:
    """The settings a shard runs with: torch on as many threads as the cores Ray gave it, not the whole node."""
    if settings.threads is None:
        return settings.model_copy(update={"threads": worker_resources(settings)["num_cpus"]})
    return settings


def worker_environment() -> dict[str, str]:
    """Variables the workers inherit from this process: the kill points, so crash tests reach into workers."""
    return {name: os.environ[name] for name in KILL_POINT_VARIABLES if name in os.environ}


@dataclass
class ShardWork:
    """What one shard's models did: tokens and seconds, summed over shards into the run's SearchWork."""

    generated_tokens: int = 0
    generation_seconds: float = 0.0
    scored_tokens: int = 0
    scoring_seconds: float = 0.0
    items: int = 0
    seconds: float = 0.0  # the shards' search time, summed
    busy_seconds: dict[str, float] = field(default_factory=dict)  # per model: time with a call in flight, summed

    def __add__(self, other: ShardWork) -> ShardWork:
        busy = {
            m: self.busy_seconds.get(m, 0.0) + other.busy_seconds.get(m, 0.0)
            for m in {**self.busy_seconds, **other.busy_seconds}
        }
        return ShardWork(
            self.generated_tokens + other.generated_tokens,
            self.generation_seconds + other.generation_seconds,
            self.scored_tokens + other.scored_tokens,
            self.scoring_seconds + other.scoring_seconds,
            self.items + other.items,
            self.seconds + other.seconds,
            busy,
        )

    def busy(self) -> dict[str, float]:
        """Each model's busy share over all shards: the workers' busy time over their search time."""
        return {m: round(b / self.seconds, 4) for m, b in self.busy_seconds.items()} if self.seconds else {}


@task(cache_policy=NO_CACHE, persist_result=False)
def search_shard(settings: Settings, run_id: str, example_ids: list[str], shard: int) -> ShardWork:
    """One shard, inside its Ray worker: its own store connection and models, its items resumed and searched."""
    from reer.flows.runs import load_models, load_verifier, model_stats, work_since
    from reer.store import Store
    from reer.tasks.ingest import stored_examples
    from reer.tasks.search_tasks import prepare_searches, search_with_retries

    store = Store(settings.db)
    try:
        # Ids travel, not texts: a flow's parameters go to the Prefect API, and 20k pairs would weigh 100 MB there.
        found = stored_examples(store, example_ids)
        examples = [found[example_id] for example_id in example_ids]
        generator, scorer = load_models(settings)
        verifier = load_verifier(settings, scorer)
        before = model_stats(generator, scorer, verifier)
        # Planned again here, from the store: a retried shard picks up after the last batch it stored.
        prepared = prepare_searches.fn(store, run_id, examples, settings.search, generator, scorer, verifier)
        # No snapshots: a lake's readers see every commit.
        traffic = search_with_retries(store, run_id, prepared.searches, (generator, scorer, verifier), settings, 0.0)
        return ShardWork(
            **work_since(before, generator, scorer, verifier),
            items=len(prepared.searches),
            seconds=traffic["seconds"],
            busy_seconds={m: share * traffic["seconds"] for m, share in traffic["busy"].items()},
        )
    finally:
        store.close()


@flow(name="search-shards", persist_result=False)
def search_shards(settings: Settings, run_id: str, shards: list[list[str]]) -> ShardWork:
    """Every shard as a Ray task at once; the work of all of them once they have all ended."""
    from prefect_ray.context import remote_options

    resources = worker_resources(settings)
    runtime_env = {"env_vars": worker_environment()}
    futures = []
    for index, example_ids in enumerate(shards):
        with remote_options(**resources, max_retries=WORKER_RETRIES, runtime_env=runtime_env):
            futures.append(search_shard.submit(worker_settings(settings), run_id, example_ids, index))
    total = ShardWork()
    for future in futures:
        total = total + future.result()  # raises the first shard's failure once it is known
    return total


def ray_runner(settings: Settings):
    """prefect-ray's task runner: the cluster at `ray_address`, else a local one for this run."""
    from prefect_ray import RayTaskRunner

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports sent from a data pipeline
    if settings.ray_address:
        return RayTaskRunner(address=settings.ray_address)
    # The dashboard costs a process and a port per run; a cluster of your own (ray start --head) has one.
    return RayTaskRunner(init_kwargs={"include_dashboard": False})


def search_on_workers(settings: Settings, run_id: str, pending: dict[str, str]) -> ShardWork:
    """Search the pending trajectories (example id -> trajectory id) in `settings.workers` shards on Ray.

    Returns the work all shards did. The examples must be in the store: the flow stored them when it read them.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    shards = split_into_shards(pending, settings.workers)
    if not shards:
        return ShardWork()
    # Workers report their task runs to this run's Prefect API. Without PREFECT_API_URL that is a temporary
    # server of this process's: name it, or each worker would start a temporary server of its own.
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return search_shards.with_options(task_runner=ray_runner(settings))(settings, run_id, shards)
