"""What a run created through the Prefect API may change (flows/run_options.py), without a server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reer.flows.run_options import (
    QuietRefusal,
    Refused,
    RunRefused,
    admit,
    path_problem,
    quiet_refusals,
    run_settings,
)
from reer.settings import Settings

DECLARED = {"run_id": None, "options": {}}


def admitted(options: dict, declared: dict = DECLARED, folder: Path = Path("."), **parameters) -> Settings | Refused:
    """`admit` for a deployment run of a publish-like deployment with these options and parameters."""
    return admit({**declared, **parameters, "options": options}, declared, folder)


@pytest.mark.parametrize(
    "options",
    [
        {"home": "/tmp/cache"},
        {"backend": "served"},
        {"generator_backend": "vllm"},
        {"scorer_backend": "served"},
        {"generator_url": "http://elsewhere:8000"},
        {"scorer_url": "http://elsewhere:8000"},
        {"generator_model": "/home/someone/model"},
        {"scorer_model": "/home/someone/model"},
        {"served": {"api_key": "sk-elsewhere"}},
        {"vllm": {"enforce_eager": True}},
        {"source_fields": {"query": "prompt"}},
        {"threads": 1},
    ],
)
def test_an_api_run_may_not_change_where_models_run_or_what_they_read(options):
    decision = admitted(options)
    assert isinstance(decision, Refused)
    assert decision.names == (f"options.{next(iter(options))}",)
    line = decision.line()
    assert "\n" not in line and "only the deployment's own parameters may set" in line
    assert "sk-elsewhere" not in line  # values are never echoed


def test_the_served_attack_names_both_options_in_one_line():
    decision = admitted({"backend": "served", "generator_url": "http://elsewhere"})
    assert isinstance(decision, Refused)
    assert decision.line().startswith("options.backend, options.generator_url: only the deployment's")


@pytest.mark.parametrize("key", ["DB", "Generator_Url", "_env_file", "_cli_parse_args", "_secrets_dir"])
def test_keys_that_are_no_setting_are_refused_not_ignored(key):
    # pydantic-settings matches field names case-insensitively and reads _-keys as instructions.
    decision = admitted({key: "/tmp/x"})
    assert isinstance(decision, Refused) and decision.names == (f"options.{key}",)
    assert "not a reer setting" in decision.reason


def test_search_quality_batching_and_retries_may_change(tmp_path):
    options = {
        "search": {"tau": 0.1, "k": 3, "seed": 7, "max_steps": 2},
        "quality": {"max_ngram_repetition": 0.3},
        "dtype": "float32",
        "generation_rows": 4,
        "score_batch_tokens": 2048,
        "model_retries": 0,
        "retry_backoff_seconds": 1.0,
        "snapshot_seconds": 0,
    }
    settings = admitted(options, folder=tmp_path, run_id="run-7")
    assert isinstance(settings, Settings)
    assert settings.search.tau == 0.1 and settings.search.seed == 7 and settings.quality.max_ngram_repetition == 0.3
    assert settings.generation_rows == 4 and settings.dtype == "float32"
    free = {"inputs": [], "limit": 3, "from_store": True}
    declared = {"inputs": [], "limit": None, "options": {}}
    assert isinstance(admit({**free, "options": {}}, declared, tmp_path), Settings)
    assert isinstance(admit({"inputs": ["x"], "use_model": False}, {"inputs": ["x"]}, tmp_path), Settings)


@pytest.fixture
def folder(tmp_path) -> Path:
    """A deployment's folder with a symlink out of it (`elsewhere` -> a sibling folder)."""
    project = tmp_path / "project"
    (project / "incoming").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (project / "elsewhere").symlink_to(tmp_path / "secret", target_is_directory=True)
    return project


@pytest.mark.parametrize("option", ["db", "out"])
@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../reer.duckdb", "outside the deployment's folder"),
        ("stores/../../x.duckdb", "outside the deployment's folder"),
        ("/tmp/x.duckdb", "outside the deployment's folder"),
        ("~/x.duckdb", "starts with '~'"),
        ("elsewhere/x.duckdb", "outside the deployment's folder"),
    ],
)
def test_db_and_out_stay_under_the_deployments_folder(folder, option, path, why):
    decision = admitted({option: path}, folder=folder)
    assert isinstance(decision, Refused) and decision.names == (f"options.{option}",)
    assert why in decision.reason and str(folder.resolve()) in decision.reason


def test_db_and_out_under_the_folder_are_allowed(folder):
    settings = admitted({"db": "stores/a.duckdb", "out": str(folder / "exports")}, folder=folder)
    assert isinstance(settings, Settings) and settings.db == Path("stores/a.duckdb")


@pytest.mark.parametrize(
    "pattern",
    ["~/data/*", "../*", "/etc/*", "incoming/*/../../../x.jsonl", "elsewhere/*.jsonl", str(Path.home() / "data")],
)
def test_input_patterns_stay_under_the_deployments_folder(folder, pattern):
    declared = {"inputs": ["incoming/*"], "options": {}}
    decision = admit({"inputs": ["incoming/a.jsonl", pattern], "options": {}}, declared, folder)
    assert isinstance(decision, Refused) and decision.names == ("inputs",)
    assert repr(pattern) in decision.reason


def test_inputs_under_the_folder_or_named_by_the_deployment_are_allowed(folder):
    declared = {"inputs": ["/srv/incoming/*"], "options": {"db": "/data/reer.duckdb", "out": "/data/out"}}
    inputs = ["/srv/incoming/*", "incoming/*.jsonl", str(folder / "incoming" / "b.csv")]
    settings = admit({"inputs": inputs, "options": {**declared["options"], "search": {"k": 4}}}, declared, folder)
    assert isinstance(settings, Settings)
    assert settings.db == Path("/data/reer.duckdb") and settings.search.k == 4


def test_a_scheduled_run_is_its_deployment_whatever_it_declares(folder):
    declared = {
        "inputs": ["/srv/in/*"],
        "fields": {"query": "prompt"},
        "options": {"backend": "served", "generator_url": "http://gpu:8000", "db": "/data/reer.duckdb"},
    }
    settings = admit(declared, declared, folder)
    assert isinstance(settings, Settings) and settings.generator_url == "http://gpu:8000"


def test_a_run_that_drops_a_declared_option_is_refused_and_told_why():
    # Prefect replaces the deployment's whole `options` with the run's: the declared backend is gone.
    decision = admitted({"search": {"tau": 0.1}}, declared={"options": {"backend": "vllm"}})
    assert isinstance(decision, Refused) and decision.names == ("options.backend",)
    assert "repeat the deployment's values" in decision.reason


def test_other_flow_parameters_are_the_deployments():
    declared = {"inputs": ["incoming/*"], "fields": None, "options": {}}
    decision = admit({**declared, "fields": {"reference": "text"}}, declared, Path("."))
    assert isinstance(decision, Refused) and decision.names == ("fields",)


def test_reer_settings_through_the_runs_job_variables_are_refused():
    decision = admit(DECLARED, DECLARED, Path("."), job_env={"REER_DB": "/tmp/x.duckdb", "OTHER": "1"})
    assert isinstance(decision, Refused) and decision.names == ("job variable env.REER_DB",)


def test_runs_outside_a_deployment_are_not_restricted(tmp_path):
    options = {"backend": "served", "generator_url": "http://elsewhere", "db": "/tmp/x.duckdb"}
    settings = admit({"options": options}, None, tmp_path)
    assert isinstance(settings, Settings) and settings.generator_url == "http://elsewhere"
    cli = Settings(db=tmp_path / "x.duckdb", backend="served", generator_url="http://elsewhere")
    assert run_settings(cli) is cli  # the CLI's object, as it is (no flow run here)
    assert run_settings({"db": "/tmp/y.duckdb"}).db == Path("/tmp/y.duckdb")


def test_path_problem_names_what_is_wrong(folder):
    assert path_problem("incoming/*.jsonl", folder) is None
    assert path_problem(".", folder) is None
    assert "climbs out" in path_problem("incoming/*/../..", folder)
    assert "not a usable path" in path_problem("a\0b", folder)


def test_a_refusal_is_logged_as_its_line_without_a_traceback(caplog):
    quiet_refusals()
    quiet_refusals()  # once is enough, however often runs are refused
    for name in ("prefect.flow_runs", "prefect.engine"):
        assert sum(isinstance(f, QuietRefusal) for f in logging.getLogger(name).filters) == 1
    logger = logging.getLogger("reer.test.refusals")  # as Prefect's loggers, without their API handler
    logger.addFilter(QuietRefusal())
    with caplog.at_level(logging.ERROR, logger=logger.name):
        for error in (RunRefused("options.db: outside"), KeyError("other")):
            try:
                raise error
            except Exception as raised:
                logger.exception("Encountered exception during execution: %r", raised)
    refused, other = caplog.records
    assert refused.exc_info is None and "options.db: outside" in refused.getMessage()
    assert other.exc_info is not None  # other errors keep their traceback
