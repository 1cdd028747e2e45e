"""The audit log: one JSON line per request, each written with a single ``os.write`` to an O_APPEND file.

A line says when, which request from which client address, which targets fired with which scores, how
many tokens were corrupted and generated, the status, the outcome and the latency. Prompts are stored as
SHA-256 digests unless the operator opts in to the text (``audit_prompts``). Lines never interleave: the
kernel appends each whole write at the end of the file, even with several writers.

A request's line is complete only when it ends, so a request is also journalled when it is accepted: a
short line in ``<log>.pending-<pid>-<id>`` (one journal per ``AuditLog``), marked done when its line is
written. A crash or a kill leaves the journal on disk; the next ``AuditLog`` on that path writes each
request it holds that never ended as a line with ``"outcome": "interrupted"`` and removes it. So no request
that reached a route goes unlogged, and each one has exactly one line in the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

__all__ = ["AUDITED_PATHS", "AuditEntry", "AuditLog", "AuditMiddleware", "prompt_digest"]

SETTLE_S = 30.0  # the longest a line waits for a cut-short generation to stop
JOURNAL_COMPACT_BYTES = 1 << 20  # a journal this long is emptied the next time no request is in flight

log = logging.getLogger("eco_unlearn.serve")

AUDITED_PATHS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/guard/classify", "/v1/guard/reload"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def prompt_digest(prompt: Any) -> str:
    """SHA-256 of a prompt: a string's UTF-8 bytes, or a chat conversation's canonical JSON."""
    if isinstance(prompt, str):
        data = prompt
    else:
        data = json.dumps(prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class AuditLog:
    """An append-only JSON Lines file with its journal of accepted requests; every method is thread-safe.

    ``write`` appends a line of its own (a SIGHUP reload); ``accept`` journals a request that arrived and
    ``complete`` writes its one line and marks it done. ``recovered`` is how many interrupted requests of
    dead processes' journals this log wrote when it opened.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._lock = threading.Lock()
        self.lines_written = 0
        self.recovered = self._recover()
        self.journal = self.path.with_name(f"{self.path.name}.pending-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._journal_fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._in_flight = 0

    @staticmethod
    def _line(record: dict[str, Any]) -> bytes:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")

    def _append(self, fd: int, line: bytes) -> None:
        written = os.write(fd, line)
        if written != len(line):  # only on a full disk or a signal; say so rather than leave it silent
            raise OSError(f"audit log {self.path}: wrote {written} of {len(line)} bytes")

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line, in one system call (so it never interleaves with another)."""
        self._append(self._fd, self._line(record))
        with self._lock:
            self.lines_written += 1

    def accept(self, record: dict[str, Any]) -> None:
        """Journal a request that has just arrived (``record`` has its ``request_id``)."""
        with self._lock:
            self._in_flight += 1
        self._append(self._journal_fd, self._line({"event": "accepted", **record}))

    def complete(self, record: dict[str, Any]) -> None:
        """Write an accepted request's line, then mark it done in the journal."""
        self.write(record)
        self._append(self._journal_fd, self._line({"event": "done", "request_id": record["request_id"]}))
        with self._lock:
            self._in_flight -= 1
            if not self._in_flight and os.fstat(self._journal_fd).st_size > JOURNAL_COMPACT_BYTES:
                os.ftruncate(self._journal_fd, 0)

    def _recover(self) -> int:
        """Log the requests that dead processes' journals accepted and never completed; remove those journals."""
        count = 0
        for journal in sorted(self.path.parent.glob(f"{self.path.name}.pending-*")):
            pid = journal.name.rsplit(".pending-", 1)[1].split("-")[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            open_requests: dict[str, dict[str, Any]] = {}
            for raw in journal.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    event = json.loads(raw)
                except ValueError:  # a line cut short by the crash
                    continue
                if event.get("event") == "accepted":
                    open_requests[event.get("request_id")] = event
                else:
                    open_requests.pop(event.get("request_id"), None)
            for event in open_requests.values():
                event.pop("event", None)
                self.write({**event, "status": None, "outcome": "interrupted", "prompts": [],
                            "note": "the server stopped before this request ended"})
                count += 1
            journal.unlink()
        if count:
            log.warning("audit log %s: %d requests were interrupted by a previous server's end", self.path, count)
        return count

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                os.close(self._journal_fd)
                self._fd = self._journal_fd = -1
                if not self._in_flight:
                    self.journal.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass
class AuditEntry:
    """What one request contributes to its audit line; handlers fill it, the middleware writes it.

    ``outcome`` is ``"completed"``, ``"refused"`` (4xx) or ``"failed"`` (5xx) unless something else ended the
    request: ``"client_disconnected"`` (the client left before the whole answer) or ``"deadline_exceeded"``.
    """

    endpoint: str
    request_id: str
    store_prompts: bool = False
    client: str | None = None
    started: float = field(default_factory=time.time)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    outcome: str | None = None
    answered: bool = False  # the whole response was sent
    answer_started: bool = False  # its status line was sent
    disconnected_before_answer: bool = False
    settling: list[tuple[asyncio.Future, Callable[[Any], None]]] = field(default_factory=list)

    def add_prompt(self, prompt: Any, **fields: Any) -> dict[str, Any]:
        """Record one prompt (as a digest, or as text when the operator opted in) with ``fields``."""
        entry: dict[str, Any] = {"sha256": prompt_digest(prompt)}
        if self.store_prompts:
            entry["prompt"] = prompt
        entry.update(fields)
        self.prompts.append(entry)
        return entry

    def fail(self, error: Any) -> None:
        self.error = {"status": error.status, "type": error.type, "code": error.code, "message": error.message}

    def client_gone(self) -> None:
        """The client closed its connection: the request was cut short unless its answer was all sent."""
        if not self.answered:
            self.outcome = self.outcome or "client_disconnected"
            self.disconnected_before_answer = not self.answer_started

    def settle(self, future: asyncio.Future, then: Callable[[Any], None]) -> None:
        """Before the line is written, wait for ``future`` (at most ``SETTLE_S``) and pass its result to ``then``:
        a stream whose client left still logs the tokens generated until its row stopped."""
        self.settling.append((future, then))

    async def settled(self) -> None:
        for future, then in self.settling:
            try:
                then(await asyncio.wait_for(asyncio.shield(future), SETTLE_S))
            except Exception:  # failed or too slow: the line says what is known
                self.extra.setdefault("unsettled", True)

    def accepted(self) -> dict[str, Any]:
        """What the journal keeps of the request from its arrival."""
        return {"time": _iso(self.started), "request_id": self.request_id, "endpoint": self.endpoint,
                "client": self.client}

    def record(self, status: int, latency_s: float) -> dict[str, Any]:
        """The request's audit line. A client that left before any answer is logged 499 (nginx's "client
        closed request"), whatever the server would have answered."""
        if self.disconnected_before_answer:
            status = 499
        outcome = self.outcome or ("completed" if status < 400 else "refused" if status < 500 else "failed")
        flagged = [p for p in self.prompts if p.get("flagged")]
        return {
            **self.accepted(),
            "status": status,
            "outcome": outcome,
            "latency_ms": round(latency_s * 1000, 3),
            "flagged": bool(flagged),
            "targets": sorted({t for p in flagged for t in p.get("targets", [])}),
            "corrupted_tokens": sum(p.get("corrupted_tokens", 0) for p in self.prompts),
            "prompts": self.prompts,
            **self.extra,
            **({"error": self.error} if self.error else {}),
        }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


class AuditMiddleware:
    """Give each audited request an ``AuditEntry`` (``request.state.audit``), journal it as it arrives, and
    write its line when the response is over, streamed or not, failed or not: exactly one line per request."""

    def __init__(self, app: Any, audit_log: AuditLog | None, *, store_prompts: bool = False,
                 paths: frozenset[str] = AUDITED_PATHS) -> None:
        self.app, self.log, self.store_prompts, self.paths = app, audit_log, store_prompts, paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        client = (scope.get("client") or (None, 0))[0]
        entry = AuditEntry(scope["path"], request_id, self.store_prompts, client=client)
        scope.setdefault("state", {})["audit"] = entry
        status = 500
        start = time.perf_counter()
        if self.log is not None:
            try:
                self.log.accept(entry.accepted())
            except OSError:
                log.exception("cannot journal request %s", request_id)

        written = False

        def write_line() -> None:
            nonlocal written
            if written or self.log is None:
                return
            written = True
            try:
                self.log.complete(entry.record(status, time.perf_counter() - start))
            except OSError:
                log.exception("cannot write the audit line of request %s", request_id)

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                entry.answer_started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                entry.answered = True
                if not entry.settling:
                    write_line()  # on disk before the client has the end of its answer
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            entry.extra.setdefault("aborted", type(exc).__name__)
            raise
        finally:
            interrupted = None
            try:
                await entry.settled()
            except asyncio.CancelledError as exc:  # write the line first, then let the cancellation through
                interrupted = exc
            write_line()
            if interrupted is not None:
                raise interrupted
