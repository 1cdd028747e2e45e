"""Run independent benchmark jobs side by side, each in its own process on its share of the CPU cores.

Small models use CPU cores poorly: two fine-tunes of SmolLM2 on one thread each finish about 1.6 times
sooner than the same two run one after the other on two threads. On a single core, or when asked, the jobs
run one after the other in this process.

Interrupting the parent stops its workers: SIGTERM (as SIGINT already does) unwinds ``run_parallel``, which
terminates them, and on Linux each worker also asks the kernel to end it when the parent dies, so even a
parent killed with SIGKILL leaves no orphan fine-tune holding gigabytes of memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import queue as queue_module
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Mapping

from .errors import ParallelError

__all__ = ["ParallelError", "available_cores", "run_parallel"]

Progress = Callable[[str, int, int], None]
Job = Callable[..., Any]  # called as job(progress=...): a functools.partial of a module-level function



def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception that cannot cross the process boundary
        return ParallelError(f"{type(exc).__name__}: {exc}")


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when its parent exits (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises SystemExit(143) like SIGINT raises KeyboardInterrupt, so ``finally``
    blocks run (the default action ends the process at once). Only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker(key: str, job: Job, events: Any, threads: int, parent: int) -> None:
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(threads)
    try:
        result = job(progress=lambda what, done, total: events.put(("progress", key, (what, done, total))))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        events.put(("error", key, _picklable(exc)))
    else:
        events.put(("done", key, result))


def run_parallel(jobs: Mapping[str, Job], *, parallel: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Run ``jobs`` (name -> callable taking a ``progress`` keyword) and return their results by name.

    With ``parallel`` and at least two cores, each job runs in a spawned process with ``cores // jobs``
    threads and ``progress`` sees the sum of their steps; the first job to fail has its exception raised
    here, and the other workers are stopped, as they are when this process is interrupted (SIGINT,
    SIGTERM: then it exits with 130 or 143) or killed. Otherwise the jobs run in order in this process.
    """
    cores = available_cores()
    if not parallel or len(jobs) < 2 or cores < 2:
        return {key: job(progress=progress) for key, job in jobs.items()}
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    threads = max(1, cores // len(jobs))
    parent = os.getpid()
    workers = {
        key: context.Process(target=_worker, args=(key, job, events, threads, parent), daemon=True)
        for key, job in jobs.items()
    }
    with _sigterm_unwinds():
        return _supervise(jobs, workers, events, progress)


def _supervise(jobs: Mapping[str, Job], workers: dict[str, Any], events: Any, progress: Progress | None) -> dict[str, Any]:
    """Start ``workers``, relay their progress and collect their results; stop them all on the way out."""
    state: dict[str, tuple[str, int, int]] = {}
    results: dict[str, Any] = {}
    try:
        for worker in workers.values():
            worker.start()
        while len(results) < len(workers):
            try:
                kind, key, payload = events.get(timeout=1.0)
            except queue_module.Empty:
                silent = [k for k, w in workers.items() if k not in results and not w.is_alive()]
                if silent:
                    try:  # its last message may still be in the pipe
                        kind, key, payload = events.get(timeout=2.0)
                    except queue_module.Empty:
                        raise ParallelError(
                            f"the {silent[0]} worker died (exit code {workers[silent[0]].exitcode}) without a result; "
                            "out of memory? run again with parallel=False (--sequential) to see its error"
                        ) from None
                else:
                    continue
            if kind == "error":
                raise payload
            if kind == "done":
                results[key] = payload
            else:
                state[key] = payload
                if progress is not None:
                    shown = [state[k] for k in jobs if k in state]  # in job order, whoever reported first
                    progress(" | ".join(s[0] for s in shown), sum(s[1] for s in shown), sum(s[2] for s in shown))
    finally:
        for worker in workers.values():
            if worker.is_alive():
                worker.terminate()
            worker.join()
    return {key: results[key] for key in jobs}
