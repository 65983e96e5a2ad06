"""load_model: one load per spec and process; a wrong backend or a missing URL is a clear error, not a model load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reer.models.loading import load_model, model_fingerprint
from reer.settings import ModelSpec, Settings
from tests.conftest import HOME

# Runs load_model in a fresh process and prints which heavy modules it imported on the way.
PROBE = """
import sys
from pathlib import Path
from reer.models.loading import load_model
from reer.settings import ModelSpec
spec = {spec}
try:
    load_model(spec)
except ValueError as error:
    print("ValueError:", error)
print("loaded:", ",".join(m for m in ("torch", "transformers", "transformers.modeling_utils") if m in sys.modules))
"""


def probe(spec: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(spec=spec)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()


def test_an_unknown_backend_is_refused_before_anything_is_imported():
    error, loaded = probe("ModelSpec.model_construct(backend='tpu')")
    assert error == "ValueError: unknown backend 'tpu': choose one of transformers, vllm, served"
    assert loaded == "loaded:"  # neither torch nor transformers


def test_an_unknown_backend_in_this_process_too():
    with pytest.raises(ValueError, match=r"unknown backend 'onnx': choose one of transformers, vllm, served"):
        load_model(ModelSpec.model_construct(backend="onnx"))


def test_served_without_a_url_names_the_model_and_loads_no_torch_model(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()  # a model folder: nothing is converted for it
    error, loaded = probe(f"ModelSpec(backend='served', name={str(folder)!r}, home=Path({str(tmp_path)!r}))")
    assert error == (f"ValueError: the served backend needs the server's URL for {folder} (e.g. http://127.0.0.1:8000)")
    assert "transformers.modeling_utils" not in loaded and "torch" not in loaded.split(":")[1].split(",")
    assert not (tmp_path / "models").exists()


def test_served_without_a_url_is_refused_before_the_model_is_resolved():
    with pytest.raises(ValueError, match="needs the server's URL"):
        load_model(ModelSpec(backend="served", name="no-such-model"))


@pytest.mark.model
def test_equal_specs_share_one_loaded_model(fp32_model, monkeypatch):
    """fp32_model makes the first call cheap (unless four other specs evicted it: lru maxsize=4)."""
    for name in [n for n in os.environ if n.startswith("REER_")]:
        monkeypatch.delenv(name)  # the specs below take every other field from the defaults
    spec = ModelSpec(dtype="float32", home=HOME)
    model = load_model(spec)
    hits = load_model.cache_info().hits
    assert load_model(ModelSpec(dtype="float32", home=HOME)) is model  # an equal spec, another object
    settings = Settings(dtype="float32", home=HOME)
    generator, scorer = settings.model_spec("generator"), settings.model_spec("scorer")
    assert generator == spec and load_model(generator) is model and load_model(scorer) is model
    assert load_model.cache_info().hits == hits + 3


def safetensors(path, tensors: dict[str, bytes]) -> None:
    """A safetensors file of byte tensors, written by hand: a header, then the data."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, data in tensors.items():
        header[name] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(tensors.values()))


def checkpoint(folder, config: dict | None = None, middle: bytes = b"trained", tokenizer: str = "{}"):
    """A checkpoint-500 folder: config, tokenizer, two weight shards; `middle` sits mid-tensor in the second."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or {"hidden_size": 8, "transformers_version": "5.0"}))
    (folder / "tokenizer.json").write_text(tokenizer)
    safetensors(folder / "model-00001-of-00002.safetensors", {"embed": bytes(range(200))})
    safetensors(folder / "model-00002-of-00002.safetensors", {"head": b"a" * 100 + middle + b"z" * 100})
    return folder


def test_a_model_folder_is_named_by_its_content_not_its_path_or_its_writer(tmp_path):
    first = model_fingerprint(checkpoint(tmp_path / "run-a" / "checkpoint-500"))
    assert len(first) == 16 and first == model_fingerprint(checkpoint(tmp_path / "copy" / "checkpoint-500"))
    resaved = checkpoint(tmp_path / "resaved" / "checkpoint-500", {"transformers_version": "5.9", "hidden_size": 8})
    (resaved / "trainer_state.json").write_text('{"global_step": 500}')  # not the model: left out
    (resaved / "optimizer.pt").write_bytes(b"adam")
    assert model_fingerprint(resaved) == first


def test_checkpoints_of_one_name_differ_by_config_tokenizer_or_weights_of_the_same_layout(tmp_path):
    first = model_fingerprint(checkpoint(tmp_path / "run-a" / "checkpoint-500"))
    other_config = checkpoint(tmp_path / "run-b" / "checkpoint-500", {"hidden_size": 16})
    other_tokenizer = checkpoint(tmp_path / "run-c" / "checkpoint-500", tokenizer='{"added": 1}')
    # Equal headers and sizes, as two checkpoints of one training run have: only the bytes differ.
    other_weights = checkpoint(tmp_path / "run-d" / "checkpoint-500", middle=b"TRAINED")
    fingerprints = {first, *(model_fingerprint(f) for f in (other_config, other_tokenizer, other_weights))}
    assert len(fingerprints) == 4
