"""All settings in one place; every field can be set as REER_<NAME> in the environment.

Built once per command (the CLI, or a flow run from a deployment's `options`) and passed down
as frozen objects. Importing this module loads pydantic only: no Prefect, polars or torch, so
`reer --help` and `reer sql` start fast.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from reer.lake import Lake, is_lake, store_location, with_data_path

Backend = Literal["transformers", "vllm", "served"]
BACKENDS: tuple[str, ...] = get_args(Backend)
Role = Literal["generator", "scorer"]
DEFAULT_HOME = Path("~/.cache/reer").expanduser()
SHIPPED_MODEL = "SmolLM2-135M-Instruct"
# A DuckDB file (a path) or a DuckLake store (ducklake:sqlite:PATH, ducklake:postgres:CONNINFO); as text in JSON.
StoreLocation = Annotated[
    Path | Lake, PlainValidator(store_location), PlainSerializer(lambda v: str(v) if isinstance(v, Lake) else v)
]


class SearchConfig(BaseModel):
    """Search settings; defaults are the authors' (REER.md)."""

    model_config = ConfigDict(frozen=True)

    tau: float = Field(0.25, description="stop once the best score is under this")
    max_steps: int = Field(10, ge=0, description="segments refined at most in one greedy pass")
    passes: int = Field(
        1, ge=1, description="greedy passes over the segments; each after the first runs only if the last one gained"
    )
    order: Literal["sequential", "impact"] = Field(
        "sequential",
        description="'impact': refine first the segments whose removal raises z(0)'s score most "
        "(one scoring of z(0) without each segment)",
    )
    k: int = Field(2, ge=1, description="candidate rewrites sampled per segment")
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.85, gt=0, le=1)
    repetition_penalty: float = Field(
        1.1, ge=1.0, description="shrink the logits of tokens already seen (the shipped 135M model loops without)"
    )
    max_initial_tokens: int = Field(384, ge=16, description="token limit for z(0) (sized for the CPU model)")
    max_refine_tokens: int = Field(160, ge=16, description="token limit for one rewritten segment")
    on_unfinished: Literal["trim", "reject"] = Field(
        "trim",
        description="z(0) cut by the token limit: 'reject' as the authors do, or 'trim' to its last "
        "complete paragraph and search on (quality validation still flags it)",
    )
    min_thinking_tokens: int = Field(100, ge=0, description="z(0) shorter than this is rejected")
    min_segment_chars: int = Field(100, ge=1, description="shorter pieces merge into the next")
    clip_min: float = Field(-2.0, lt=0, description="log-probabilities are clipped to [clip_min, 0]")
    accept_margin: float = Field(
        1e-5,
        ge=0,
        description="a candidate is accepted only when its float32 score is this much below the best's "
        "(above float32's own noise across batch shapes, measured in bench/NOTES.md)",
    )
    seed: int = 0
    initial_retries: int = Field(
        2,
        ge=0,
        description="a rejected z(0) (too short, one segment, unfinished) is sampled again with a new "
        "seed at most this many times; every rejected one is stored with its reason",
    )
    refine_retries: int = Field(
        1,
        ge=0,
        description="a step whose k rewrites are all unusable (unparsable or a copy) is sampled again "
        "with a new seed at most this many times; every sample is stored",
    )
    min_refine_tokens: int = Field(16, ge=0, description="a rewrite cannot end before this many new tokens")
    max_copied_tokens: int = Field(
        8, ge=0, description="a rewrite repeats no run longer than this many tokens of its segment (0: no limit)"
    )
    max_repeated_tokens: int = Field(
        12,
        ge=0,
        description="no generation (z(0) or rewrite) repeats a run longer than this many tokens of its own "
        "text: a loop is cut where it starts (0: no limit; the transformers backend only)",
    )

    def fingerprint(self) -> str:
        """12 hex characters that change whenever any search setting does."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    def thinking_reserve(self) -> int:
        """Context tokens held back for the thinking and the chat template (as the search checks it)."""
        return self.max_initial_tokens + 64


class QualityConfig(BaseModel):
    """Quality thresholds; the README explains each default."""

    model_config = ConfigDict(frozen=True)

    ngram: int = Field(4, ge=1, description="n of the n-grams counted for repetition")
    max_ngram_repetition: float = Field(0.2, ge=0, le=1, description="share of n-grams that repeat an earlier one")
    shingle: int = Field(3, ge=1, description="units per shingle for duplicate detection")
    max_duplicate_similarity: float = Field(0.8, ge=0, le=1, description="Jaccard similarity to an earlier text")
    min_thinking_tokens: int = Field(100, ge=0, description="tokens in the final thinking, at least")
    max_thinking_tokens: int = Field(4096, ge=1, description="tokens in the final thinking, at most")
    max_copied_span: int = Field(12, ge=1, description="longest run of units the thinking shares with the answer")
    min_relative_improvement: float = Field(
        0.001, description="(initial - final) / initial score, for trajectories the search worked on"
    )
    min_reflection_cues: int = Field(1, ge=0, description="reflection cues in the thinking, at least")
    max_same_cue: int = Field(2, ge=1, description="uses of any one reflection cue, at most")


class ServedConfig(BaseModel):
    """How the served backend talks to `vllm serve` (REER_SERVED__<FIELD>)."""

    model_config = ConfigDict(frozen=True)

    timeout_seconds: float = Field(600.0, gt=0, description="longest wait for one HTTP answer")
    retries: int = Field(4, ge=0, description="retries of a request that failed in transport or got 408/429/5xx")
    backoff_seconds: float = Field(1.0, ge=0, description="first wait before a retry; doubles each time")
    concurrency: int = Field(
        64,
        ge=1,
        description="HTTP requests in flight at once, per server of a model: the driver keeps this many items' "
        "calls there (on a GPU server, its --max-num-seqs divided by k fills the batch)",
    )
    cooldown_seconds: float = Field(
        5.0, ge=0, description="a failing server of a pool sits out this long; doubles while it keeps failing"
    )
    api_key: SecretStr | None = Field(None, description="sent as `Authorization: Bearer`; never stored or shown")


class VllmConfig(BaseModel):
    """How the in-process vllm backend builds its engine (REER_VLLM__<FIELD>)."""

    model_config = ConfigDict(frozen=True)

    max_model_len: int | None = Field(None, ge=64, description="context length (default: the model's)")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="share of GPU memory for one engine; split it when both roles load in one process"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over")
    enforce_eager: bool = Field(False, description="no CUDA graphs or compilation: faster start, slower steps")


def server_urls(value: str) -> str:
    """`value`'s comma-separated server URLs, checked and rejoined; ValueError names the first malformed one."""
    urls = [u.strip() for u in value.split(",")]
    for url in urls:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            shown = re.sub(r"(?<=://)[^/@\s]+@", "***@", url)  # no credentials in the error
            raise ValueError(f"{shown!r} is not a server URL (http://HOST:PORT); several go comma-separated")
    return ",".join(urls)


class ModelSpec(BaseModel):
    """Everything that loads one model on one backend: equal specs share one loaded model."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(SHIPPED_MODEL, description="a model folder or the shipped model")
    backend: Backend = "transformers"
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    home: Path = DEFAULT_HOME
    threads: int | None = None
    generation_rows: int = 32
    score_batch_tokens: int = 8192
    url: str | None = Field(None, description="the served backend's server")
    served: ServedConfig = ServedConfig()
    vllm: VllmConfig = VllmConfig()


class Settings(BaseSettings):
    """reer's settings: where things live, which model, how to batch, how to search."""

    model_config = SettingsConfigDict(env_prefix="REER_", env_nested_delimiter="__", extra="ignore", frozen=True)

    home: Path = Field(DEFAULT_HOME, description="cache for converted models")
    db: StoreLocation = Field(
        Path("reer.duckdb"),
        description="the store: a DuckDB file, or a DuckLake that many processes share: "
        "ducklake:sqlite:PATH (one machine) or ducklake:postgres:CONNINFO (several)",
    )
    lake_data_path: str | None = Field(
        None,
        description="a DuckLake store's folder of Parquet files (default: <PATH>.files/ beside a SQLite catalog; "
        "a PostgreSQL catalog needs it when the lake is created, on storage every machine mounts at that path)",
    )
    out: Path = Field(Path("reer-out"), description="exports go under <out>/<run_id>/")
    backend: Backend = Field(
        "transformers",
        description="transformers, vllm (in-process) or served (`vllm serve`), "
        "for both roles unless generator_backend / scorer_backend say otherwise",
    )
    generator_backend: Backend | None = Field(None, description="the generator's backend (default: backend)")
    scorer_backend: Backend | None = Field(None, description="the scorer's backend (default: backend)")
    generator_url: str | None = Field(
        None, description="served backend: the generator's server, http://HOST:PORT, or several, comma-separated"
    )
    scorer_url: str | None = Field(
        None, description="served backend: the scorer's server, http://HOST:PORT, or several, comma-separated"
    )
    verifier_url: str | None = Field(
        None,
        description="served backend: a server of the scorer's model in float32 that verifies each acceptance "
        "(default: none; the scorer's server is then trusted as exact)",
    )
    served: ServedConfig = ServedConfig()
    vllm: VllmConfig = VllmConfig()
    generator_model: str = Field(SHIPPED_MODEL, description="a model folder or the shipped model")
    scorer_model: str = Field(SHIPPED_MODEL, description="a model folder or the shipped model")
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    threads: int | None = Field(None, description="CPU threads for torch (default: all cores)")
    generation_rows: int = Field(32, ge=1, description="sequences sampled together in one generation batch")
    score_batch_tokens: int = Field(8192, ge=256, description="padded tokens per scoring forward pass")
    feeding: Literal["auto", "batched"] = Field(
        "auto",
        description="auto: each model takes calls as its backend declares (a served model: up to "
        "served.concurrency per server, one item's need each; vLLM in-process: 256; transformers: one batch at a time); "
        "batched: one call at a time over every model, as the round-based driver sent them",
    )
    store_seconds: float = Field(
        0.2, ge=0, description="the search stores its applied steps in one transaction at least this often"
    )
    model_retries: int = Field(3, ge=0, description="times the search resumes after a model stops answering")
    retry_backoff_seconds: float = Field(5.0, ge=0, description="first wait before such a retry; doubles each time")
    snapshot_seconds: float = Field(
        30.0, ge=0, description="publish <db>.snapshot.duckdb for readers at most this often during a run (0: never)"
    )
    store_wait_seconds: float = Field(
        6 * 3600.0, ge=0, description="a deployment run waits this long for a store another process writes"
    )
    source_fields: dict[str, str] = Field(
        default_factory=dict,
        description="role -> field for input files that match no declared source, e.g. "
        '{"query": "prompt", "reference": "answer"} (REER_SOURCE_FIELDS as JSON; empty query: texts without requests)',
    )
    workers: int = Field(
        1,
        ge=1,
        description="search workers: 1 searches in this process; more split the pending items into that many "
        "shards, each searched by a Ray task that loads its own models (needs a DuckLake store)",
    )
    ray_address: str | None = Field(
        None,
        # Ray's own variable is honoured too: a machine joined to a cluster usually has it set already.
        validation_alias=AliasChoices("ray_address", "REER_RAY_ADDRESS", "RAY_ADDRESS"),
        description="the Ray cluster the workers run on, e.g. ray://head:10001 or head:6379 "
        "(default: a local cluster started for the run and stopped after it)",
    )
    search: SearchConfig = SearchConfig()
    quality: QualityConfig = QualityConfig()

    @model_validator(mode="after")
    def _lake_data_path(self) -> Settings:
        """The lake's data path travels with `db`, so every Store(settings.db) finds its files."""
        located = with_data_path(self.db, self.lake_data_path)
        if located is not self.db:
            object.__setattr__(self, "db", located)  # frozen: set once, while the object is built
        return self

    @field_validator("generator_url", "scorer_url", "verifier_url")
    @classmethod
    def _server_urls(cls, value: str | None) -> str | None:
        """One server URL or a comma-separated pool of them, each http(s)://HOST[:PORT]."""
        return None if value is None else server_urls(value)

    @classmethod
    def of(cls, options: Settings | dict[str, Any] | None) -> Settings:
        """The settings a flow runs with: the CLI's object as it is, or a deployment's options over the environment."""
        return options if isinstance(options, Settings) else cls(**(options or {}))

    def role_backend(self, role: Role) -> Backend:
        return getattr(self, f"{role}_backend") or self.backend

    def model_spec(self, role: Role) -> ModelSpec:
        """What loads the generator's or the scorer's model."""
        backend = self.role_backend(role)
        return ModelSpec(
            name=getattr(self, f"{role}_model"),
            backend=backend,
            dtype=self.dtype,
            home=self.home,
            threads=self.threads,
            generation_rows=self.generation_rows,
            score_batch_tokens=self.score_batch_tokens,
            url=getattr(self, f"{role}_url") if backend == "served" else None,
            served=self.served,
            vllm=self.vllm,
        )

    def verifier_spec(self) -> ModelSpec | None:
        """What loads the scorer's model in float32 to verify acceptances; None when the scorer's own scores are.

        A served scorer is verified only by a `verifier_url` server: its own dtype is the server's and unknown here.
        """
        scorer = self.model_spec("scorer")
        if scorer.backend == "served":
            return (
                scorer.model_copy(update={"url": self.verifier_url, "dtype": "float32"}) if self.verifier_url else None
            )
        return None if scorer.dtype == "float32" else scorer.model_copy(update={"dtype": "float32"})

    def workers_problem(self) -> str | None:
        """Why these settings cannot search with several workers; None when they can (or use one)."""
        if self.workers > 1 and not is_lake(self.db):
            return (
                f"--workers {self.workers} needs a store that several processes write, and {self.db} is a DuckDB "
                "file (one writer): use --db ducklake:sqlite:PATH (one machine) or ducklake:postgres:CONNINFO"
            )
        return None

    def backend_label(self) -> str:
        """The backends a run uses, as stored in runs.backend: one name, or each role's when they differ."""
        generator, scorer = self.role_backend("generator"), self.role_backend("scorer")
        return generator if generator == scorer else f"generator={generator},scorer={scorer}"
