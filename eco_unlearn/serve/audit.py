"""The audit log: one JSON line per request, each written with a single ``os.write`` to an O_APPEND file.

A line says when, which request, which targets fired with which scores, how many tokens were corrupted,
the status and the latency. Prompts are stored as SHA-256 digests unless the operator opts in to the
text (``audit_prompts``). Lines never interleave: the kernel appends each whole write at the end of the
file, even with several writers.
"""

from __future__ import annotations

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
from typing import Any

__all__ = ["AUDITED_PATHS", "AuditEntry", "AuditLog", "AuditMiddleware", "prompt_digest"]

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
    """An append-only JSON Lines file; ``write`` is safe from any thread."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._lock = threading.Lock()
        self.lines_written = 0

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line, in one system call (so it never interleaves with another)."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        written = os.write(self._fd, line)
        if written != len(line):  # only on a full disk or a signal; say so rather than leave it silent
            raise OSError(f"audit log {self.path}: wrote {written} of {len(line)} bytes")
        with self._lock:
            self.lines_written += 1

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


@dataclass
class AuditEntry:
    """What one request contributes to its audit line; handlers fill it, the middleware writes it."""

    endpoint: str
    request_id: str
    store_prompts: bool = False
    started: float = field(default_factory=time.time)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

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

    def record(self, status: int, latency_s: float) -> dict[str, Any]:
        flagged = [p for p in self.prompts if p.get("flagged")]
        return {
            "time": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "status": status,
            "latency_ms": round(latency_s * 1000, 3),
            "flagged": bool(flagged),
            "targets": sorted({t for p in flagged for t in p.get("targets", [])}),
            "corrupted_tokens": sum(p.get("corrupted_tokens", 0) for p in self.prompts),
            "prompts": self.prompts,
            **self.extra,
            **({"error": self.error} if self.error else {}),
        }


class AuditMiddleware:
    """Give each audited request an ``AuditEntry`` (``request.state.audit``) and write it when the
    response is over, streamed or not, failed or not: exactly one line per request."""

    def __init__(self, app: Any, audit_log: AuditLog | None, *, store_prompts: bool = False,
                 paths: frozenset[str] = AUDITED_PATHS) -> None:
        self.app, self.log, self.store_prompts, self.paths = app, audit_log, store_prompts, paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        entry = AuditEntry(scope["path"], request_id, self.store_prompts)
        scope.setdefault("state", {})["audit"] = entry
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            entry.extra.setdefault("aborted", type(exc).__name__)
            raise
        finally:
            if self.log is not None:
                try:
                    self.log.write(entry.record(status, time.perf_counter() - start))
                except OSError:
                    log.exception("cannot write the audit line of request %s", request_id)
