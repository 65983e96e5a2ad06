"""Sharding for `reer run --workers N` without a cluster: stable shards, resources per backend, the plain-file refusal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reer.flows.cluster import (
    ShardWork,
    shard_of,
    split_into_shards,
    worker_environment,
    worker_resources,
    worker_settings,
)
from reer.settings import Settings


def test_a_trajectory_lands_in_the_same_shard_every_time_and_shards_cover_all():
    pending = {f"ex-{n}": f"traj-{n}" for n in range(40)}
    shards = split_into_shards(pending, 3)
    assert sorted(e for shard in shards for e in shard) == sorted(pending)
    assert len(shards) == 3 and all(shards)  # 40 ids fill three shards
    for shard in shards:
        assert len({shard_of(pending[e], 3) for e in shard}) == 1
        assert shard == sorted(shard, key=lambda e: int(e.split("-")[1]))  # the planned order is kept
    assert shard_of("traj-7", 3) == shard_of("traj-7", 3) and 0 <= shard_of("traj-7", 3) < 3


def test_empty_shards_are_dropped():
    assert split_into_shards({"ex-1": "traj-1"}, 8) == [["ex-1"]]


def test_a_gpu_backend_asks_for_a_gpu_and_the_cpu_backend_for_cores():
    assert worker_resources(Settings(backend="vllm")) == {"num_cpus": 1, "num_gpus": 1}
    tensor_parallel = Settings(generator_backend="vllm", vllm={"tensor_parallel_size": 2})
    assert worker_resources(tensor_parallel)["num_gpus"] == 2
    assert worker_resources(Settings()) == {"num_cpus": 1}
    assert worker_resources(Settings(threads=4)) == {"num_cpus": 4}
    assert worker_resources(Settings(backend="served", generator_url="http://a:1", scorer_url="http://a:1")) == {
        "num_cpus": 1
    }
    assert worker_settings(Settings()).threads == 1  # torch uses the cores Ray gave the shard, not the node's


def test_workers_get_the_kill_points_and_nothing_else(monkeypatch):
    monkeypatch.setenv("REER_KILL_AT", "stored:2")
    monkeypatch.setenv("REER_DB", "elsewhere.duckdb")
    assert worker_environment() == {"REER_KILL_AT": "stored:2"}


def test_shard_work_adds_up():
    total = ShardWork(10, 1.0, 20, 2.0, 3) + ShardWork(1, 0.5, 2, 0.25, 1)
    assert total == ShardWork(11, 1.5, 22, 2.25, 4)


def test_workers_and_ray_address_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REER_WORKERS", "4")
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    settings = Settings(db="ducklake:sqlite:lake.sqlite")
    assert (settings.workers, settings.ray_address, settings.workers_problem()) == (4, "head:6379", None)


@pytest.mark.parametrize("workers", [2, 8])
def test_several_workers_on_a_plain_file_are_refused_in_one_line_before_anything_starts(tmp_path, workers):
    db = tmp_path / "reer.duckdb"
    result = subprocess.run(
        [sys.executable, "-m", "reer.cli", "run", "--workers", str(workers), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert f"--workers {workers} needs a store" in result.stderr and "--db ducklake:sqlite:PATH" in result.stderr
    assert not db.exists()


def test_the_flow_refuses_too_before_it_opens_the_store(tmp_path):
    from reer.flows.cluster import WorkersNeedLake
    from reer.flows.synthesize import synthesize

    with pytest.raises(WorkersNeedLake, match="ducklake:sqlite:PATH"):
        synthesize.fn(options={"db": str(tmp_path / "reer.duckdb")}, workers=2)
    assert not (tmp_path / "reer.duckdb").exists()


def test_a_run_on_a_lake_leaves_other_running_runs_alone(tmp_path):
    from reer.flows.runs import mark_crashed
    from reer.store import Store

    store = Store(f"ducklake:sqlite:{tmp_path / 'lake.sqlite'}")
    try:
        store.write("runs", [{"run_id": "live", "flow_name": "synthesize"}])
        store.write("run_events", [{"run_id": "live", "status": "running"}])
        assert mark_crashed(store) == []  # another writer of the lake, searching right now
        assert store.query("SELECT status FROM run_overview")["status"].to_list() == ["running"]
    finally:
        store.close()
