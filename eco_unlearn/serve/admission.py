"""Admission: what a request must pass before any route works on it, and the watch on its client after.

``AdmissionMiddleware`` (inside the audit middleware, so every refusal here still gets its audit line):

- a client address with ``max_concurrent_per_client`` requests in flight on the audited routes gets 429
  with ``Retry-After`` before its body is read;
- the body is read here: over ``limit`` bytes is 413 (announced or streamed), not all there within
  ``timeout_s`` is 408, and a client that leaves before sending it all is logged 400 (``incomplete_body``),
  never a 500;
- once the body is in, one task watches the connection; when the client leaves, the request's
  ``ClientWatch`` (``request.state.client_watch``) runs its callbacks, so the route can stop generating for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any, Callable

from .errors import APIError, error_body

__all__ = ["AdmissionMiddleware", "ClientWatch"]

log = logging.getLogger("eco_unlearn.serve")


class ClientWatch:
    """Whether a request's client is still connected; ``on_gone`` callbacks run once when it leaves."""

    def __init__(self) -> None:
        self.gone = False
        self._callbacks: list[Callable[[], None]] = []
        self.left = asyncio.Event()

    def on_gone(self, callback: Callable[[], None]) -> None:
        if self.gone:
            callback()
        else:
            self._callbacks.append(callback)

    def set_gone(self) -> None:
        if self.gone:
            return
        self.gone = True
        self.left.set()
        for callback in self._callbacks:
            try:
                callback()
            except Exception:  # one callback must not keep the others from running
                log.exception("a disconnect callback failed")


class AdmissionMiddleware:
    """Per-client concurrency, a bounded and timed body read, and the disconnect watch (see the module)."""

    DRAIN_LIMIT = 64 << 20  # an oversized body is read (and dropped) up to here, so the client sees the 413

    def __init__(self, app: Any, *, limit: int, timeout_s: float, max_per_client: int,
                 paths: frozenset[str]) -> None:
        self.app, self.limit, self.timeout_s, self.max_per_client, self.paths = app, limit, timeout_s, max_per_client, paths
        self.in_flight: Counter[str] = Counter()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = scope["path"] in self.paths
        client = (scope.get("client") or ("unknown", 0))[0]
        if counted and self.in_flight[client] >= self.max_per_client:
            error = APIError(429, f"this client already has {self.in_flight[client]} requests in flight, the most the "
                             "server allows per address (max_concurrent_per_client); wait for one to end",
                             code="too_many_concurrent_requests", headers={"Retry-After": "1"})
            await self._answer(scope, send, error)
            return
        if counted:
            self.in_flight[client] += 1
        try:
            await self._admitted(scope, receive, send)
        finally:
            if counted:
                self.in_flight[client] -= 1
                if not self.in_flight[client]:
                    del self.in_flight[client]

    async def _admitted(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            body = await asyncio.wait_for(self._read_body(scope, receive), self.timeout_s)
        except APIError as refused:
            await self._answer(scope, send, refused)
            return
        except asyncio.TimeoutError:
            error = APIError(408, f"the request body did not arrive within {self.timeout_s:g} s (body_timeout_s)",
                             code="request_timeout")
            await self._answer(scope, send, error)
            return
        watch = ClientWatch()
        state = scope.setdefault("state", {})
        state["client_watch"] = watch
        if state.get("audit") is not None:
            watch.on_gone(state["audit"].client_gone)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await watch.left.wait()
            return {"type": "http.disconnect"}

        async def watching() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            watch.set_gone()

        watcher = asyncio.get_running_loop().create_task(watching())
        try:
            await self.app(scope, replay, send)
        finally:
            watcher.cancel()

    async def _read_body(self, scope: dict, receive: Any) -> bytes:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.limit
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise APIError(400, "the client closed the connection before sending the whole body",
                               code="incomplete_body")
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > self.limit
            if too_large:
                chunks.clear()  # keep reading (and dropping) so the client sees the 413, not a reset connection
                if size > self.DRAIN_LIMIT:
                    break
            else:
                chunks.append(chunk)
            more = message.get("more_body", False)
        if too_large:
            raise APIError(413, f"the request body exceeds the server's limit of {self.limit} bytes",
                           code="request_too_large")
        return b"".join(chunks)

    @staticmethod
    async def _answer(scope: dict, send: Any, error: APIError) -> None:
        """Answer ``error`` and close the connection (its unread body, if any, is not worth reading)."""
        audit = scope.get("state", {}).get("audit")
        if audit is not None:
            audit.fail(error)
        payload = json.dumps(error_body(error.message, error.type, error.param, error.code)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                   (b"connection", b"close"), *((k.lower().encode(), v.encode()) for k, v in error.headers.items())]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
