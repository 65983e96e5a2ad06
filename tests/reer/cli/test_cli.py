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


# `make demo`'s last command (Makefile), on trajectory ids as long as a real run's.
DEMO_QUERY = (
    "SELECT trajectory_id, round(initial_score, 4) AS initial, round(final_score, 4) AS final, "
    "steps, accepted_edits, reason FROM outcomes ORDER BY created_at DESC LIMIT 10"
)
IDS = ("3f9a1c0d7e5b2a64", "b71e09c4d2a85f13")


def sql_at_80_columns(tmp_path: Path, query: str):
    db = tmp_path / "ids.duckdb"
    if not db.exists():
        rows = [{**CLEAN["a"], "trajectory_id": IDS[0]}, {**CLEAN["b"], "trajectory_id": IDS[1]}]
        fill_store(db, rows).close()
    return CliRunner().invoke(app, ["sql", query, "--db", str(db)], env={"COLUMNS": "80"}, terminal_width=80)


def test_sql_keeps_each_id_whole_on_one_line_at_80_columns(tmp_path):
    result = sql_at_80_columns(tmp_path, DEMO_QUERY)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for trajectory in IDS:
        assert any(trajectory in line and "pass_complete" in line for line in lines), result.output
    assert max(len(line) for line in lines) <= 80


def test_sql_folds_only_the_long_text_columns(tmp_path):
    query = (
        "SELECT o.trajectory_id, round(o.initial_score, 4) AS initial, round(o.final_score, 4) AS final, o.steps, "
        "o.accepted_edits, o.reason, e.query FROM outcomes o JOIN trajectories t USING (trajectory_id) "
        "JOIN examples e ON e.example_id = t.example_id ORDER BY o.trajectory_id"
    )
    result = sql_at_80_columns(tmp_path, query)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for trajectory, initial in zip(IDS, ("0.9000", "0.8000")):
        assert any(trajectory in line and initial in line and "pass_complete" in line for line in lines)
    assert not any("lighthouse keeper on the last night" in line for line in lines)  # the long query folds
    assert "lighthouse" in result.output and "2 rows" in result.output


def test_sql_prints_stored_text_as_it_is_and_an_error_in_one_line(tmp_path):
    db = crafted_db(tmp_path)
    text = CliRunner().invoke(app, ["sql", "SELECT '[bold]x[/bold] [/]' AS v", "--db", str(db)], terminal_width=200)
    assert text.exit_code == 0 and "[bold]x[/bold] [/]" in text.output, text.output
    bad = CliRunner().invoke(app, ["sql", "SELECT nope", "--db", str(db)], env={"COLUMNS": "40"})
    assert bad.exit_code == 1 and bad.output.startswith("reer: Binder Error: Referenced column")
    assert len(bad.output.strip().splitlines()) == 1


HEAVY = ("prefect", "torch", "transformers", "great_expectations", "sqlalchemy", "reer.models.loading")
IMPORTS_AFTER = """
import sys
from typer.testing import CliRunner
from reer.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
print("heavy:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_help_and_sql_start_without_prefect_torch_or_a_model(tmp_path):
    """What keeps `reer --help` and `reer sql` under a second (bench/startup.py measures it)."""
    import subprocess
    import sys

    import duckdb

    db = tmp_path / "s.duckdb"
    duckdb.connect(str(db)).close()
    script = IMPORTS_AFTER.format(heavy=HEAVY)
    for args in (["--help"], ["sql", "SELECT 1 AS one", "--db", str(db)]):
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == "heavy:", f"{args[0]} imported {done.stdout.strip()}"


def test_sql_prints_no_control_sequence_in_any_format(tmp_path):
    db = crafted_db(tmp_path)
    query = "SELECT 'a' || chr(27) || ']0;pwned' || chr(7) || 'b' || chr(155) || 'c' AS v"
    for format in ("table", "csv", "json"):
        result = CliRunner().invoke(app, ["sql", query, "--db", str(db), "-f", format], terminal_width=200)
        assert result.exit_code == 0, result.output
        if format == "json":  # json writes C0 as escapes, which a terminal prints as text; C1 goes
            assert '"a\\u001b]0;pwned\\u0007bc"' in result.output, result.output
        else:
            assert "pwned" not in result.output and "abc" in result.output, (format, result.output)
        assert not any(ord(c) < 0x20 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F for c in result.output)


def test_sql_refuses_to_write_a_file_in_one_line(tmp_path):
    db = crafted_db(tmp_path)
    size = db.stat().st_size
    for statement in (f"COPY (SELECT 1 AS a) TO '{tmp_path / 'x.csv'}'", f"COPY (SELECT 1 AS a) TO '{db}'"):
        result = CliRunner().invoke(app, ["sql", statement, "--db", str(db)], env={"COLUMNS": "40"})
        assert result.exit_code == 1 and result.output.startswith("reer: "), result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x.csv").exists() and db.stat().st_size == size
    views = CliRunner().invoke(app, ["sql", "SELECT count(*) AS n FROM run_overview", "--db", str(db)])
    assert views.exit_code == 0 and "1 row" in views.output, views.output
