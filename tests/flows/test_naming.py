"""Flow-run names, tags and the ingest deployment's input patterns (no model, no server)."""

from __future__ import annotations

from pathlib import Path

from reer.deployments import deployment_specs, flow_of, project_dir
from reer.flows.ingest import expand_inputs
from reer.flows.naming import run_tags, source_label


def test_source_labels_say_what_a_run_reads():
    assert source_label(None) == "sample"
    assert source_label([], from_store=True) == "pending"
    assert source_label(["/data/in/pairs.jsonl"]) == "pairs.jsonl"
    assert source_label(["a.jsonl", "b.csv", "c.parquet"]) == "a.jsonl+2"


def test_tags_name_source_model_and_config():
    assert run_tags("pairs.jsonl", "/models/Qwen3-8B", "SmolLM2-135M-Instruct", "abc123") == [
        "reer",
        "source:pairs.jsonl",
        "model:Qwen3-8B",
        "scorer:SmolLM2-135M-Instruct",
        "config:abc123",
    ]
    assert run_tags("sample", "m", "m") == ["reer", "source:sample", "model:m"]


def test_input_patterns_expand_and_plain_paths_stay(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "notes.txt"):
        (tmp_path / name).write_text("{}\n")
    assert expand_inputs([str(tmp_path / "*.jsonl"), str(tmp_path / "missing.csv"), str(tmp_path / "none-*.csv")]) == [
        tmp_path / "a.jsonl",
        tmp_path / "b.jsonl",
        tmp_path / "missing.csv",
    ]


def test_every_deployment_in_prefect_yaml_names_a_flow_a_pool_and_a_cron():
    specs = deployment_specs(project_dir())
    assert {d["name"] for d in specs} >= {"ingest-nightly", "synthesize-pending-nightly", "publish-nightly"}
    for spec in specs:
        assert flow_of(spec["entrypoint"]).name == Path(spec["entrypoint"].split(":")[0]).stem
        assert spec["work_pool"]["name"] == "reer" and spec["schedules"][0]["cron"]
