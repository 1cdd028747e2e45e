"""A micro-batcher: concurrent requests with compatible settings share one ``generate`` call.

Jobs queue on the event loop; one worker thread runs the model. While it is busy, new jobs wait, and
the next batch takes the oldest job and every waiting job with the same key (same guard, compatible
sampling settings) that fits, up to ``max_rows`` prompts. A batch generates as many new tokens as its
largest ``new_tokens``, so a job joins only if that stays within every member's ``room``: a prompt that
fits the model's context alone is never refused or truncated because of a batch-mate. While several owners
(client addresses) wait, each gets at most an equal share of a batch before the rest is filled, so one client
flooding the queue cannot push the others' requests into later batches. ``max_rows=1``
turns batching off. If ``run`` raises, every job of that batch is failed with the exception (its ``fail``),
so no request waits forever, and the worker goes on with the next batch. A job cancelled while it waits is
dropped (its ``dropped`` answers it) and never reaches the model.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, TypeVar

from ..errors import ServerError

__all__ = ["Job", "MicroBatcher"]

log = logging.getLogger("eco_unlearn.serve")

P = TypeVar("P")


@dataclass(eq=False)
class Job(Generic[P]):
    """One request's prompts (``payload``: whatever ``run`` needs of it), with the key that says which other
    jobs it may share a batch with."""

    key: Hashable | None  # None: never batched with another job
    rows: int
    payload: P
    cancelled: Callable[[], bool] = lambda: False
    new_tokens: int = 0  # the most tokens any of its prompts generates
    room: float = math.inf  # the most new tokens its prompts can share a generate call with
    fail: Callable[[BaseException], None] = lambda exc: None  # answers the job with an error; idempotent
    dropped: Callable[[], None] = lambda: None  # answers a job cancelled before it ran
    owner: Hashable | None = None  # who sent it (a client address): no owner may crowd others out of a batch


class MicroBatcher:
    """Run ``run(jobs)`` in one worker thread for batches of compatible jobs, oldest first."""

    def __init__(self, run: Callable[[list[Job]], None], *, max_rows: int = 8, wait_s: float = 0.002) -> None:
        self.run, self.max_rows, self.wait_s = run, max_rows, wait_s
        self._pending: deque[Job] = deque()
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eco-unlearn-generate")
        self.batches: list[int] = []  # rows per batch run, for benchmarks
        self.last_batch_s = 0.0  # how long the last batch ran, for Retry-After estimates

    @property
    def queued(self) -> int:
        """Jobs waiting for the worker."""
        return len(self._pending)

    def start(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    def submit(self, job: Job) -> None:
        if self._ready is None:
            raise ServerError("the batcher is not started")
        self._pending.append(job)
        self._ready.set()

    def discard(self, job: Job) -> None:
        """Drop ``job`` now if it is still waiting (its ``dropped`` answers it); call on the event loop."""
        if job in self._pending:
            self._pending.remove(job)
            job.dropped()

    def _take(self) -> list[Job]:
        """The oldest job and the compatible ones that fit with it: first, oldest first, at most an equal share
        of the batch per ``owner`` among the owners waiting; then anything compatible, into what is left."""
        first = self._pending.popleft()
        batch, rows = [first], first.rows
        need, room = first.new_tokens, first.room
        if first.key is None:
            return batch
        share = max(first.rows, self.max_rows // len({first.owner, *(job.owner for job in self._pending)}))
        owned = Counter({first.owner: first.rows})
        for fair in (True, False):
            for job in list(self._pending):
                fits = max(need, job.new_tokens) <= min(room, job.room)
                within = not fair or owned[job.owner] + job.rows <= share
                if job.key == first.key and rows + job.rows <= self.max_rows and fits and within:
                    self._pending.remove(job)
                    batch.append(job)
                    rows += job.rows
                    owned[job.owner] += job.rows
                    need, room = max(need, job.new_tokens), min(room, job.room)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            if self.wait_s > 0:
                await asyncio.sleep(self.wait_s)  # let requests that arrive together be batched together
            for job in [job for job in self._pending if job.cancelled()]:
                self._pending.remove(job)
                job.dropped()
            if not self._pending:
                self._ready.clear()
                continue
            batch = []
            for job in self._take():
                if job.cancelled():
                    job.dropped()
                else:
                    batch.append(job)
            if not self._pending:
                self._ready.clear()
            if not batch:
                continue
            self.batches.append(sum(job.rows for job in batch))
            started = loop.time()
            try:
                await loop.run_in_executor(self._executor, self.run, batch)
            except Exception as exc:  # run() raised: answer each job of the batch with the error
                log.exception("a generation batch failed")
                for job in batch:
                    try:
                        job.fail(exc)
                    except Exception:  # one job's callback must not leave the others hanging
                        log.exception("cannot fail a job of the failed batch")
            self.last_batch_s = loop.time() - started
