"""`reer validate`, `export`, `report` and `deploy` on a crafted store: tables and paths out, one clear line for bad input."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from reer.cli import app
from tests.tasks.crafted import CLEAN, fill_store


def crafted_db(tmp_path: Path) -> Path:
    store = fill_store(tmp_path / "c.duckdb", [CLEAN["a"], {**CLEAN["b"], "initial_finish_reason": "length"}])
    store.close()
    return tmp_path / "c.duckdb"


def test_validate_prints_pass_rates_and_the_data_docs(tmp_path):
    db = crafted_db(tmp_path)
    result = CliRunner().invoke(app, ["validate", "--db", str(db), "--out", str(tmp_path / "out")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "thinking_closed" in result.output and "1 / 2" in result.output and "50.0%" in result.output
    assert "1 of 2 trajectories passed every check" in result.output
    assert (tmp_path / "out" / "run-1" / "data_docs" / "index.html").exists()


def test_export_validates_first_when_needed(tmp_path):
    db = crafted_db(tmp_path)
    result = CliRunner().invoke(
        app, ["export", "run-1", "--db", str(db), "--out", str(tmp_path / "out")], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "validating it first" in result.output and "exported 1 of 2 trajectories" in result.output
    assert {p.name for p in (tmp_path / "out" / "run-1").iterdir()} >= {
        "train.parquet",
        "train.jsonl",
        "trajectories.parquet",
        "README.md",
        "data_docs",
    }


def test_an_unknown_run_or_database_is_one_line(tmp_path):
    db = crafted_db(tmp_path)
    unknown = CliRunner().invoke(app, ["validate", "nope", "--db", str(db)])
    missing = CliRunner().invoke(app, ["export", "--db", str(tmp_path / "missing.duckdb")])
    for result in (unknown, missing):
        assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no run 'nope'" in unknown.output
    assert "no reer database" in missing.output and not (tmp_path / "missing.duckdb").exists()


def test_report_writes_the_html_of_the_latest_run_and_says_where(tmp_path):
    db = crafted_db(tmp_path)
    result = CliRunner().invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "out")], terminal_width=300)
    assert result.exit_code == 0, result.output
    report = tmp_path / "out" / "run-1" / "report.html"
    assert report.exists() and report.resolve().as_uri() in result.output
    unknown = CliRunner().invoke(app, ["report", "nope", "--db", str(db), "--out", str(tmp_path / "out")])
    assert unknown.exit_code == 1 and "no run 'nope'" in unknown.output and "Traceback" not in unknown.output


def test_deploy_without_a_server_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["deploy", "--port", "9"], terminal_width=200)
    assert result.exit_code == 1 and "no Prefect server answers at http://127.0.0.1:9/api" in result.output
