"""run_parallel: jobs in spawned processes on their share of the cores, summed progress, errors raised in
the parent, dead workers reported, and workers stopped when the parent gives up."""

from __future__ import annotations

import multiprocessing
import os
import time
from functools import partial

import pytest

from eco_unlearn.training.sft import FinetuneError
from eco_unlearn.parallel import ParallelError, available_cores, run_parallel

needs_two_cores = pytest.mark.skipif(available_cores() < 2, reason="parallel jobs need two cores")


def report_pid(steps: int, *, progress=None) -> tuple[int, int]:
    import torch

    for step in range(1, steps + 1):
        if progress is not None:
            progress(f"job of {steps}", step, steps)
    return os.getpid(), torch.get_num_threads()


def fail(*, progress=None) -> None:
    raise FinetuneError("the checkpoint in /x belongs to another run")


def die(*, progress=None) -> None:
    os._exit(3)


SLEEP_S = 300  # how long a worker sleeps after its first progress report, unless it is stopped


def sleep_after_progress(*, progress=None) -> None:
    progress("started", 1, 2)
    time.sleep(SLEEP_S)


@needs_two_cores
def test_jobs_run_side_by_side_in_their_own_processes_with_summed_progress():
    seen = []
    results = run_parallel({"a": partial(report_pid, 2), "b": partial(report_pid, 3)}, progress=lambda *a: seen.append(a))
    assert list(results) == ["a", "b"]
    pids = {pid for pid, _ in results.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(threads == max(1, available_cores() // 2) for _, threads in results.values())
    assert seen[-1][1:] == (5, 5)  # 2 + 3 steps of 2 + 3
    assert all(total <= 5 for _, _, total in seen)
    assert not multiprocessing.active_children()


def test_sequential_runs_in_this_process_with_the_jobs_own_progress():
    seen = []
    results = run_parallel({"a": partial(report_pid, 2), "b": partial(report_pid, 1)}, parallel=False, progress=lambda *a: seen.append(a))
    assert {pid for pid, _ in results.values()} == {os.getpid()}
    assert seen == [("job of 2", 1, 2), ("job of 2", 2, 2), ("job of 1", 1, 1)]


def test_a_single_job_runs_in_this_process():
    assert run_parallel({"only": partial(report_pid, 1)})["only"][0] == os.getpid()


@needs_two_cores
def test_a_failing_job_raises_its_error_in_the_parent():
    with pytest.raises(FinetuneError, match="belongs to another run"):
        run_parallel({"ok": partial(report_pid, 1), "bad": fail})
    assert not multiprocessing.active_children()


@needs_two_cores
def test_a_worker_that_dies_is_reported_not_waited_for():
    with pytest.raises(ParallelError, match="died .exit code 3"):
        run_parallel({"ok": partial(report_pid, 1), "dead": die})


@needs_two_cores
def test_workers_are_stopped_when_the_parent_gives_up():
    gave_up = []

    def give_up(what, done, total):
        gave_up.append(time.perf_counter())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_parallel({"a": sleep_after_progress, "b": sleep_after_progress}, progress=give_up)
    # timed from the give-up, not the start (spawning two workers that import torch takes long on a loaded
    # machine): the workers still had SLEEP_S to sleep, so returning well before that means they were stopped
    assert time.perf_counter() - gave_up[0] < SLEEP_S / 2 and not multiprocessing.active_children()
