"""Interrupting a parallel run stops its workers: SIGTERM and SIGINT unwind the parent, which terminates
them, and a parent killed outright (SIGKILL) takes them with it. Each test starts a real parent process
running ``run_parallel`` on two spawned workers, signals the parent and checks both workers are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from eco_unlearn.parallel import available_cores

pytestmark = pytest.mark.skipif(available_cores() < 2 or not sys.platform.startswith("linux"),
                                reason="needs two cores and Linux process semantics")

PARENT = textwrap.dedent('''
    import os, sys, time
    from functools import partial
    from eco_unlearn.parallel import run_parallel

    def hold(folder, name, *, progress=None):
        open(os.path.join(folder, name + ".pid"), "w").write(str(os.getpid()))
        time.sleep(300)

    if __name__ == "__main__":
        folder = sys.argv[1]
        run_parallel({"a": partial(hold, folder, "a"), "b": partial(hold, folder, "b")})
''')


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its new parent) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# SIGINT unwinds as KeyboardInterrupt, which test_parallel.py covers in-process
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, -signal.SIGKILL)])
def test_signalling_the_parent_stops_both_workers(tmp_path, signum, code):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: all((tmp_path / f"{n}.pid").is_file() for n in "ab"), 60), "the workers never started"
        time.sleep(0.1)  # the pid files are written before the writes are flushed and closed
        workers = [int((tmp_path / f"{n}.pid").read_text()) for n in "ab"]
        assert all(alive(pid) for pid in workers)
        parent.send_signal(signum)
        parent.wait(timeout=30)
        assert parent.returncode == code, parent.stderr.read().decode()[-2000:]
        assert wait_for(lambda: not any(alive(pid) for pid in workers), 10), "a worker outlived its parent"
    finally:
        parent.kill()
        parent.wait()
