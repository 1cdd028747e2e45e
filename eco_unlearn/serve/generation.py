"""What a backend is asked to generate and what it gives back, and the per-row bookkeeping of a batch.

``RowCollector`` is a stopping criterion that reads each new token of every row of a batched
``generate`` call: it stops a row at its own ``max_tokens``, at the end-of-sequence token or at the
first of its stop strings (the text is cut before it), and hands out text deltas for streaming, holding
back anything that could still become a stop string or an incomplete character.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..runtime.guard import GuardDecision
from ..runtime.plan import EncodedPrompt
from ..runtime.prompts import PromptInput
from .errors import APIError

__all__ = [
    "END", "MIN_TEMPERATURE", "ChoiceResult", "GenerationHandle", "GenerationParams", "Prepared", "RowCollector",
]

END = object()  # marks the end of a handle's delta stream
MIN_TEMPERATURE = 1e-5  # below it sampling is greedy, as in vLLM (dividing the logits by it would overflow)


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings of one request: ``temperature`` 0 is greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def batch_key(self) -> tuple | None:
        """Requests with equal keys can share one ``generate`` call; None: run alone.

        Greedy requests always batch (per-row lengths and stops are handled per row); unseeded sampling
        batches with the same temperature and top_p; a seeded sample runs alone so that its seed alone
        decides it.
        """
        if self.temperature == 0:
            return ("greedy",)
        if self.seed is None:
            return ("sample", self.temperature, self.top_p)
        return None


@dataclass
class Prepared:
    """A prompt as the client sent it, rendered and tokenized once (``encoded``, what generation plans
    from), and checked with its ``max_tokens`` against the context."""

    prompt: PromptInput
    encoded: EncodedPrompt
    max_tokens: int

    @property
    def user_text(self) -> str:
        """What the classifier sees: the user's own text."""
        return self.encoded.prompt.user_text

    @property
    def prompt_tokens(self) -> int:
        return len(self.encoded.ids)

    @property
    def text(self) -> str:
        """The rendered prompt, chat template included."""
        return self.encoded.prompt.text

    @property
    def add_special_tokens(self) -> bool:
        return self.encoded.prompt.add_special_tokens


@dataclass
class ChoiceResult:
    index: int
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    decision: GuardDecision


class GenerationHandle:
    """The asyncio side of one request being generated in another thread (or relayed upstream).

    ``decided`` resolves with ``(decisions, classifier_errors)`` once the guard has classified the
    prompts (before any token); ``deltas`` yields ``(index, text)`` pieces and then ``END``; ``done``
    resolves with the ``ChoiceResult`` list. A failure rejects both futures.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.decided: asyncio.Future = loop.create_future()
        self.done: asyncio.Future = loop.create_future()
        self.deltas: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.cancel_reason: str | None = None  # "client_disconnected" or "deadline_exceeded"
        self.generated = 0  # tokens generated so far, all prompts together (written by the worker)
        self.generated_at_cancel: int | None = None
        self.on_cancel: Callable[[], None] = lambda: None  # the backend's: e.g. take the request off its queue
        for future in (self.decided, self.done):
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception never retrieved"

    def _call(self, fn: Callable, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass

    @staticmethod
    def _resolve(future: asyncio.Future, value: Any = None, error: BaseException | None = None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    # Thread-safe setters, for the worker thread.
    def set_decided(self, decisions: list[GuardDecision], errors: list[str | None]) -> None:
        self._call(self._resolve, self.decided, (decisions, errors))

    def emit(self, index: int, text: str) -> None:
        if text:
            self._call(self.deltas.put_nowait, (index, text))

    def finish(self, results: list[ChoiceResult]) -> None:
        self._call(self.deltas.put_nowait, END)
        self._call(self._resolve, self.done, results)

    def fail(self, error: BaseException) -> None:
        self._call(self._resolve, self.decided, None, error)
        self._call(self.deltas.put_nowait, END)
        self._call(self._resolve, self.done, None, error)

    def cancel(self, reason: str = "client_disconnected") -> None:
        """The client went away (or the request's deadline passed): stop generating for it at the next token."""
        if self.cancelled:
            return
        self.cancel_reason, self.generated_at_cancel = reason, self.generated
        self.cancelled = True
        self.on_cancel()

    def cancel_error(self) -> APIError:
        """The error a cancelled request ends with, when it ends before its answer: 499 (nginx's "client
        closed request", for the audit log only: nobody is there to read it) or 503 past its deadline."""
        if self.cancel_reason == "deadline_exceeded":
            return APIError(503, "the request did not finish within the server's deadline (request_timeout_s); "
                            "retry with fewer max_tokens or later", code="deadline_exceeded")
        return APIError(499, "the client closed the connection", code="client_disconnected")

    def drop(self) -> None:
        """Answer a cancelled request that never reached the model (thread-safe)."""
        self.fail(self.cancel_error())


@dataclass
class _Row:
    max_tokens: int
    stops: tuple[str, ...]
    emit: Callable[[str], None]
    ids: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    finish: str | None = None
    cancelled: Callable[[], bool] = lambda: False
    on_close: Callable[[], None] = lambda: None
    on_token: Callable[[], None] = lambda: None
    peak: int = 0  # the most tokens it has had: a restarted row regenerates its tokens without counting them again


class RowCollector:
    """A ``StoppingCriteria`` for ``model.generate`` that tracks every row of the batch on its own."""

    def __init__(self, tokenizer: Any, eos_ids: Sequence[int], rows: list[_Row], *, restart_within: int = 0) -> None:
        """``restart_within``: a row cancelled within this many steps stops the whole ``generate`` call
        (``restart`` is then True), so that the caller can run the other rows again without the dead one
        instead of computing it, padded, to the end; their text already streamed is not sent twice."""
        self.tokenizer, self.eos, self.rows = tokenizer, set(eos_ids), rows
        self.restart_within, self.steps, self.restart = restart_within, 0, False

    @staticmethod
    def row(max_tokens: int, stops: Sequence[str] = (), emit: Callable[[str], None] = lambda text: None,
            cancelled: Callable[[], bool] = lambda: False, on_close: Callable[[], None] = lambda: None,
            on_token: Callable[[], None] = lambda: None) -> _Row:
        """A row; ``on_close`` runs once when it finishes (so its request can be answered before the batch
        ends), ``on_token`` on each token it generates."""
        return _Row(max_tokens, tuple(stops), emit, cancelled=cancelled, on_close=on_close, on_token=on_token)

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        self.steps += 1
        cancelled = False
        for row, token in zip(self.rows, input_ids[:, -1].tolist()):
            if row.finish is None:
                self._feed(row, token)
                cancelled = cancelled or row.finish == "cancelled"
        running = [row for row in self.rows if row.finish is None]
        if cancelled and running and self.steps <= self.restart_within:
            self.restart = True
            for row in running:  # generated again from the start, in a batch without the cancelled rows
                row.ids, row.text = [], ""
            return torch.ones(len(self.rows), dtype=torch.bool, device=input_ids.device)
        return torch.tensor([row.finish is not None for row in self.rows], device=input_ids.device)

    def _feed(self, row: _Row, token: int) -> None:
        if row.cancelled():
            row.finish = "cancelled"
            row.on_close()
            return
        if token in self.eos:
            self._close(row, "stop")
            return
        row.ids.append(token)
        if len(row.ids) > row.peak:
            row.peak = len(row.ids)
            row.on_token()
        row.text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        cut = self._first_stop(row)
        if cut is not None:
            row.text = row.text[:cut]
            self._close(row, "stop")
        elif len(row.ids) >= row.max_tokens:
            self._close(row, "length")
        else:
            safe = self._safe_length(row)
            if safe > row.sent:
                row.emit(row.text[row.sent : safe])
                row.sent = safe

    def _first_stop(self, row: _Row) -> int | None:
        found = [i for i in (row.text.find(s) for s in row.stops) if i >= 0]
        return min(found) if found else None

    @staticmethod
    def _safe_length(row: _Row) -> int:
        """How much of the text can be sent: not a trailing partial character, nor a tail that may
        still grow into a stop string."""
        text = row.text.rstrip("\ufffd")
        hold = 0
        for stop in row.stops:
            for k in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:k]):
                    hold = k
                    break
        return len(text) - hold

    def _close(self, row: _Row, reason: str) -> None:
        row.finish = reason
        if len(row.text) > row.sent:
            row.emit(row.text[row.sent :])
            row.sent = len(row.text)
        row.on_close()

    def finalize(self) -> None:
        """Close rows that ``generate`` ended without this collector (cannot normally happen)."""
        for row in self.rows:
            if row.finish is None:
                self._close(row, "length")
