"""reer's `vllm serve` helper: the flags it starts a server with (no server is started here)."""

from __future__ import annotations

from pathlib import Path

from reer.models.vllm_server import CPU_SERVER_ARGS, LocalVllmServer


def test_a_cpu_server_starts_with_chunked_prefill_off_and_a_gpu_server_keeps_it():
    cpu = LocalVllmServer(Path("/models/m"), python="python", port=8000, cpu=True).command
    gpu = LocalVllmServer(Path("/models/m"), python="python", port=8000, cpu=False).command
    assert "--no-enable-chunked-prefill" in CPU_SERVER_ARGS
    assert set(CPU_SERVER_ARGS) <= set(cpu) and not set(CPU_SERVER_ARGS) & set(gpu)
    assert [a for a in cpu if a not in CPU_SERVER_ARGS] == gpu


def fake_python(folder: Path, says: str) -> str:
    """An executable standing in for the server's Python: it prints `says` to any command."""
    path = folder / f"python-{says}"
    path.write_text(f"#!/bin/sh\necho {says}\n")
    path.chmod(0o755)
    return str(path)


def test_the_helper_asks_the_servers_python_whether_torch_sees_a_gpu(tmp_path):
    assert LocalVllmServer(Path("/models/m"), python=fake_python(tmp_path, "True"), port=8000).cpu is False
    assert LocalVllmServer(Path("/models/m"), python=fake_python(tmp_path, "False"), port=8000).cpu is True
    # A Python that cannot answer gets the CPU flags: they are safe on a GPU too, only slower there.
    assert LocalVllmServer(Path("/models/m"), python=str(tmp_path / "missing"), port=8000).cpu is True
