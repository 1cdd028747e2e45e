"""A real vLLM engine for the tests: ``scripts/vllm-server`` in a subprocess of its own (process group), on a
free loopback port, with start, kill (SIGKILL, as a crash would) and restart on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("ECO_UNLEARN_VLLM_VENV", Path.home() / ".cache" / "eco-unlearn" / "vllm-venv"))
START_TIMEOUT = float(os.environ.get("ECO_UNLEARN_VLLM_START_TIMEOUT", "900"))  # seconds from launch to answering


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (no virtualenv, or it did not come up); the message says why."""


def unavailable_reason() -> str | None:
    """Why no engine can start here, or None when one can be tried."""
    if os.environ.get("ECO_UNLEARN_VLLM", "1") == "0":
        return "ECO_UNLEARN_VLLM=0: the real-vLLM tests are switched off"
    if not (VENV / ".vllm-stamp").is_file():
        return f"no vLLM virtualenv at {VENV}: create it with `scripts/vllm-server --install-only` (scripts/test does)"
    return None


class Engine:
    def __init__(self, port: int, log: Path, vllm_args: tuple[str, ...] = ()) -> None:
        self.port, self.log, self.vllm_args = port, log, vllm_args
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.launched, self.launches = 0.0, 0  # time.monotonic() of the last launch, and how many there were
        self.start_seconds: list[float] = []  # how long each start took until /v1/models answered

    def launch(self) -> None:
        """Start the engine and return at once; ``wait`` blocks until it answers (it boots meanwhile)."""
        self.launched, self.launches = time.monotonic(), self.launches + 1
        with self.log.open("a") as log:
            command = [str(ROOT / "scripts" / "vllm-server"), "--port", str(self.port), "--", *self.vllm_args]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float) -> None:
        """Block until the launched engine answers ``/v1/models``, at most ``timeout`` s after its launch."""
        assert self.process is not None, "launch the engine first"
        while time.monotonic() - self.launched < timeout:
            if self.process.poll() is not None:
                raise EngineUnavailable(f"the vLLM engine exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    if len(self.start_seconds) < self.launches:
                        self.start_seconds.append(time.monotonic() - self.launched)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise EngineUnavailable(f"the vLLM engine did not answer within {timeout:.0f} s:\n{self.tail()}")

    def start(self, timeout: float) -> None:
        self.launch()
        self.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole engine (the script and vLLM's processes), as a crash or an OOM kill would."""
        if self.process is None:
            return
        try:  # the whole group, even if the script itself is gone already
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or not _group_alive(self.process.pid):
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        self.kill()  # whatever of vLLM's processes outlived the script


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
