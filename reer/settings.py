"""All settings in one place; every field can be set as REER_<NAME> in the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reer.models.loading import Backend, ServedConfig, VllmConfig
from reer.tasks.quality import QualityConfig
from reer.tasks.search import SearchConfig


class Settings(BaseSettings):
    """reer's settings: where things live, which model, how to batch, how to search."""

    model_config = SettingsConfigDict(env_prefix="REER_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path("~/.cache/reer").expanduser(), description="cache for converted models")
    db: Path = Field(Path("reer.duckdb"), description="the DuckDB store")
    out: Path = Field(Path("reer-out"), description="exports go under <out>/<run_id>/")
    backend: Backend = Field("transformers", description="transformers, vllm (in-process) or served (`vllm serve`), "
                             "for both roles unless generator_backend / scorer_backend say otherwise")
    generator_backend: Backend | None = Field(None, description="the generator's backend (default: backend)")
    scorer_backend: Backend | None = Field(None, description="the scorer's backend (default: backend)")
    generator_url: str | None = Field(None, description="served backend: the generator's server, http://HOST:PORT")
    scorer_url: str | None = Field(None, description="served backend: the scorer's server, http://HOST:PORT")
    served: ServedConfig = ServedConfig()
    vllm: VllmConfig = VllmConfig()
    generator_model: str = Field("SmolLM2-135M-Instruct", description="a model folder or the shipped model")
    scorer_model: str = Field("SmolLM2-135M-Instruct", description="a model folder or the shipped model")
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    threads: int | None = Field(None, description="CPU threads for torch (default: all cores)")
    generation_rows: int = Field(32, ge=1, description="sequences sampled together in one generation batch")
    score_batch_tokens: int = Field(8192, ge=256, description="padded tokens per scoring forward pass")
    model_retries: int = Field(3, ge=0, description="times the search resumes after a model stops answering")
    retry_backoff_seconds: float = Field(5.0, ge=0, description="first wait before such a retry; doubles each time")
    snapshot_seconds: float = Field(
        30.0, ge=0, description="publish <db>.snapshot.duckdb for readers at most this often during a run (0: never)")
    source_fields: dict[str, str] = Field(
        default_factory=dict,
        description="role -> field for input files that match no declared source, e.g. "
        '{"query": "prompt", "reference": "answer"} (REER_SOURCE_FIELDS as JSON; empty query: texts without requests)',
    )
    search: SearchConfig = SearchConfig()
    quality: QualityConfig = QualityConfig()
