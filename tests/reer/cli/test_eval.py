"""`reer eval` and the controls in `reer show`, on a crafted store with a scripted scorer standing in for the model."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from reer.cli import app
from tests.tasks.crafted import CLEAN, THIRD, fill_store
from tests.tasks.test_controls import ScriptedScorer


def crafted_db(tmp_path: Path) -> Path:
    """Three completed trajectories; the run searched with segments of 20 characters (its answers are short)."""
    store = fill_store(tmp_path / "c.duckdb", [CLEAN["a"], CLEAN["b"], THIRD])
    store.close()
    with duckdb.connect(str(tmp_path / "c.duckdb")) as con:
        con.execute("UPDATE runs SET config = ?", [json.dumps({"search": {"min_segment_chars": 20}})])
    return tmp_path / "c.duckdb"


@pytest.fixture
def loads(monkeypatch):
    """What `reer eval` asked to load; it gets the scripted scorer."""
    asked = []

    def load_model(spec):
        asked.append(spec)
        return ScriptedScorer()

    monkeypatch.setattr("reer.models.loading.load_model", load_model)
    return asked


def test_eval_scores_the_latest_run_in_float32_and_prints_its_figures(tmp_path, loads):
    db = crafted_db(tmp_path)
    result = CliRunner().invoke(app, ["eval", "--db", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert [s.dtype for s in loads] == ["float32"]  # the bf16 default: the float32 copy is loaded, only it
    assert "scoring 12 sequences for 3 completed trajectories of run run-1" in result.output
    assert "thinking gain over no thinking: mean +0.5000, z* better by >= 1e-05 in 3/3 (100%)" in result.output
    assert "specificity over another item's thinking: mean +0.3000" in result.output
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM controls WHERE run_id = 'run-1'").fetchone()[0] == 12


def test_show_prints_a_trajectorys_controls_once_computed(tmp_path, loads):
    db = crafted_db(tmp_path)
    before = CliRunner().invoke(app, ["show", "traj-a", "--db", str(db)], terminal_width=200)
    assert before.exit_code == 0 and "controls: none computed yet" in before.output
    CliRunner().invoke(app, ["eval", "run-1", "--db", str(db)])
    after = CliRunner().invoke(app, ["show", "traj-a", "--db", str(db)], terminal_width=200)
    assert after.exit_code == 0, after.output
    assert "controls (float32" in after.output and "+0.5000" in after.output and "+0.3000" in after.output
    assert "traj-b" in after.output  # the donor of traj-a's other thinking


def test_eval_problems_are_one_line_each(tmp_path, loads):
    db = crafted_db(tmp_path)
    unknown = CliRunner().invoke(app, ["eval", "nope", "--db", str(db)])
    missing = CliRunner().invoke(app, ["eval", "--db", str(tmp_path / "missing.duckdb")])
    assert loads == []  # neither loaded a model
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE trajectories SET scorer_fingerprint = 'another-model'")
    other = CliRunner().invoke(app, ["eval", "--db", str(db)])
    for result in (unknown, missing, other):
        assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no run 'nope'" in unknown.output and "no reer database" in missing.output
    assert "run run-1 was scored by model another-model" in other.output
    error_lines = [line for line in other.output.splitlines() if line.startswith("reer:")]
    assert len(error_lines) == 1
