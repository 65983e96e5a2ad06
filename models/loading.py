"""Load a backend once per process: generator and scorer share it when they name the same model."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from reer.models.base import LanguageModel
from reer.models.shipped import resolve_model


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
) -> LanguageModel:
    """The model `name` (a folder or the shipped SmolLM2) on `backend`, loaded once."""
    if backend != "transformers":
        raise ValueError(f"unknown backend {backend!r}: this install has 'transformers'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub at run time
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from reer.models.transformers_backend import TransformersModel

    folder = resolve_model(name, Path(home))
    return TransformersModel(
        folder,
        model_id=Path(name).name if Path(name).is_dir() else name,
        dtype=dtype,
        threads=threads,
        generation_batch_size=generation_rows,
        score_batch_tokens=score_batch_tokens,
    )
