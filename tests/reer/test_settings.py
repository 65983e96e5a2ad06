"""Settings: read from REER_* variables, merged with what the caller passes, frozen, and cheap to import."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from reer.settings import (
    BACKENDS,
    SHIPPED_MODEL,
    ModelSpec,
    QualityConfig,
    SearchConfig,
    ServedConfig,
    Settings,
    VllmConfig,
)


@pytest.fixture(autouse=True)
def no_reer_environment(monkeypatch):
    """Each test sees only the REER_* variables it sets itself (the Makefile and CI set some)."""
    for name in list(os.environ):
        if name.upper().startswith("REER_"):
            monkeypatch.delenv(name)


# -- the environment -----------------------------------------------------------------------------


def test_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("REER_DB", str(tmp_path / "mine.duckdb"))
    monkeypatch.setenv("REER_SEARCH__TAU", "0.5")
    monkeypatch.setenv("REER_SERVED__RETRIES", "7")
    monkeypatch.setenv("REER_SOURCE_FIELDS", json.dumps({"query": "ask", "reference": "text"}))
    monkeypatch.setenv("REER_BACKEND", "served")
    settings = Settings()
    assert settings.db == tmp_path / "mine.duckdb"
    assert settings.search.tau == 0.5 and settings.search.k == SearchConfig().k  # the rest keeps its defaults
    assert settings.served.retries == 7 and settings.served.timeout_seconds == ServedConfig().timeout_seconds
    assert settings.source_fields == {"query": "ask", "reference": "text"}
    assert settings.backend == "served"


def test_defaults_without_any_variable():
    settings = Settings()
    assert settings.db == Path("reer.duckdb") and settings.out == Path("reer-out")
    assert settings.backend == "transformers" and settings.generator_backend is settings.scorer_backend is None
    assert settings.generator_model == settings.scorer_model == SHIPPED_MODEL
    assert settings.source_fields == {} and settings.search == SearchConfig() and settings.quality == QualityConfig()


def test_init_values_merge_with_the_environment_in_nested_configs(monkeypatch):
    monkeypatch.setenv("REER_SEARCH__TAU", "0.5")
    monkeypatch.setenv("REER_SERVED__RETRIES", "7")
    settings = Settings(search={"k": 3}, served={"timeout_seconds": 5})
    assert (settings.search.k, settings.search.tau) == (3, 0.5)
    assert (settings.served.timeout_seconds, settings.served.retries) == (5.0, 7)
    # A value given for the same field wins over the environment's.
    assert Settings(search={"tau": 0.1}).search.tau == 0.1


def test_a_whole_config_object_replaces_the_environments_values(monkeypatch):
    """Only dicts merge: a SearchConfig object is taken as it is, env-set fields included."""
    monkeypatch.setenv("REER_SEARCH__TAU", "0.5")
    settings = Settings(search=SearchConfig(k=3))
    assert settings.search == SearchConfig(k=3) and settings.search.tau == SearchConfig().tau


def test_of_keeps_an_object_and_builds_one_from_a_dict_or_nothing(monkeypatch):
    monkeypatch.setenv("REER_SEARCH__TAU", "0.5")
    given = Settings(dtype="float32")
    assert Settings.of(given) is given
    from_dict = Settings.of({"search": {"k": 4}, "scorer_model": "/models/scorer"})
    assert isinstance(from_dict, Settings)
    assert (from_dict.search.k, from_dict.search.tau, from_dict.scorer_model) == (4, 0.5, "/models/scorer")
    from_none = Settings.of(None)
    assert isinstance(from_none, Settings) and from_none.search.tau == 0.5 and from_none.search.k == 2
    assert Settings.of({}) == from_none


# -- frozen ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "name", "value"),
    [
        (lambda s: s, "db", Path("other.duckdb")),
        (lambda s: s, "backend", "served"),
        (lambda s: s.search, "tau", 0.9),
        (lambda s: s.quality, "ngram", 5),
        (lambda s: s.served, "retries", 0),
        (lambda s: s.vllm, "enforce_eager", True),
        (lambda s: s.model_spec("scorer"), "dtype", "float32"),
    ],
)
def test_settings_and_their_parts_are_frozen(owner, name, value):
    settings = Settings()
    target = owner(settings)
    before = getattr(target, name)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(target, name, value)
    assert getattr(target, name) == before


# -- model specs per role -------------------------------------------------------------------------


def test_model_spec_per_role_with_the_shared_fields():
    settings = Settings(
        generator_model="/models/big",
        scorer_model="/models/small",
        dtype="float32",
        threads=3,
        generation_rows=8,
        score_batch_tokens=4096,
        home=Path("/cache/reer"),
    )
    generator, scorer = settings.model_spec("generator"), settings.model_spec("scorer")
    assert (generator.name, scorer.name) == ("/models/big", "/models/small")
    for spec in (generator, scorer):
        assert isinstance(spec, ModelSpec)
        assert (spec.backend, spec.dtype, spec.threads, spec.generation_rows, spec.score_batch_tokens) == (
            "transformers",
            "float32",
            3,
            8,
            4096,
        )
        assert spec.home == Path("/cache/reer") and spec.url is None


def test_equal_roles_give_equal_specs_so_they_share_one_model():
    settings = Settings(dtype="float32")
    assert settings.model_spec("generator") == settings.model_spec("scorer")
    assert hash(settings.model_spec("generator")) == hash(settings.model_spec("scorer"))
    assert Settings(scorer_model="/models/small").model_spec("generator") != Settings(
        scorer_model="/models/small"
    ).model_spec("scorer")


def test_role_backends_and_urls_go_only_to_served_roles():
    settings = Settings(
        backend="served",
        scorer_backend="transformers",
        generator_url="http://gen:8001",
        scorer_url="http://scorer:8002",
        served={"retries": 9},
        vllm={"tensor_parallel_size": 2},
    )
    generator, scorer = settings.model_spec("generator"), settings.model_spec("scorer")
    assert (generator.backend, generator.url) == ("served", "http://gen:8001")
    assert (scorer.backend, scorer.url) == ("transformers", None)  # a URL means nothing to transformers
    assert generator.served.retries == scorer.served.retries == 9
    assert generator.vllm.tensor_parallel_size == 2
    assert settings.role_backend("generator") == "served" and settings.role_backend("scorer") == "transformers"


def test_backend_label_is_one_name_or_each_roles():
    assert Settings().backend_label() == "transformers"
    assert Settings(backend="served").backend_label() == "served"
    assert Settings(backend="vllm", generator_backend="vllm").backend_label() == "vllm"
    assert Settings(generator_backend="vllm").backend_label() == "generator=vllm,scorer=transformers"
    assert Settings(backend="vllm", scorer_backend="served").backend_label() == "generator=vllm,scorer=served"
    assert set(BACKENDS) == {"transformers", "vllm", "served"}


# -- the search fingerprint ----------------------------------------------------------------------

# A valid other value for every search field.
CHANGED = {
    "tau": 0.3,
    "max_steps": 11,
    "passes": 2,
    "order": "impact",
    "k": 3,
    "temperature": 0.7,
    "top_p": 0.9,
    "repetition_penalty": 1.2,
    "max_initial_tokens": 385,
    "max_refine_tokens": 161,
    "on_unfinished": "reject",
    "min_thinking_tokens": 101,
    "min_segment_chars": 101,
    "clip_min": -3.0,
    "accept_margin": 1e-4,
    "seed": 1,
    "initial_retries": 1,
    "refine_retries": 2,
    "min_refine_tokens": 17,
    "max_copied_tokens": 9,
    "max_repeated_tokens": 13,
}


def test_the_fingerprint_changes_with_every_search_field():
    assert set(CHANGED) == set(SearchConfig.model_fields), "give each new search field a changed value here"
    base = SearchConfig().fingerprint()
    prints = {name: SearchConfig(**{name: value}).fingerprint() for name, value in CHANGED.items()}
    assert base not in prints.values()
    assert len(set(prints.values())) == len(CHANGED)  # no two changes collide either


def test_the_fingerprint_is_short_hex_and_stable():
    fingerprint = SearchConfig().fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", fingerprint)
    assert SearchConfig(k=2, tau=0.25).fingerprint() == fingerprint  # defaults spelled out: the same config
    assert Settings(search={"seed": 0}).search.fingerprint() == fingerprint
    other_process = subprocess.run(
        [sys.executable, "-c", "from reer.settings import SearchConfig; print(SearchConfig().fingerprint())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other_process.stdout.strip() == fingerprint  # no per-process hash seed in it


# -- bad values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"backend": "tpu"},
        {"dtype": "float16"},
        {"search": {"k": 0}},
        {"search": {"top_p": 1.5}},
        {"search": {"on_unfinished": "keep"}},
        {"quality": {"max_ngram_repetition": 2}},
        {"served": {"timeout_seconds": 0}},
        {"vllm": {"gpu_memory_utilization": 0}},
        {"generation_rows": 0},
        {"source_fields": "query=prompt"},
    ],
)
def test_a_bad_value_is_a_validation_error(options):
    with pytest.raises(ValidationError):
        Settings(**options)


def test_a_bad_environment_value_is_a_validation_error_naming_the_field(monkeypatch):
    monkeypatch.setenv("REER_SEARCH__K", "0")
    with pytest.raises(ValidationError, match="k"):
        Settings()
    monkeypatch.delenv("REER_SEARCH__K")
    monkeypatch.setenv("REER_SOURCE_FIELDS", "query=prompt")  # not JSON: pydantic-settings' own error
    with pytest.raises(SettingsError, match='field "source_fields"'):
        Settings()


def test_a_vllm_config_refuses_a_tiny_context():
    with pytest.raises(ValidationError):
        VllmConfig(max_model_len=16)
    assert VllmConfig(max_model_len=64).max_model_len == 64


# -- importing it is cheap ------------------------------------------------------------------------


def test_importing_settings_loads_no_heavy_library():
    code = (
        "import sys, reer.settings; "
        "print(','.join(m for m in ('prefect', 'polars', 'torch', 'transformers', 'duckdb') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
    # The same probe does see a heavy library once something imports it.
    check = subprocess.run(
        [sys.executable, "-c", code.replace("reer.settings", "reer.settings, polars")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "polars"
