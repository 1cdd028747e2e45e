"""Hostile clients for the abuse benchmark, each a loop of one kind of attack on the server at ``url``.

They connect from their own loopback address (``SOURCE``), so the server's per-address limits tell them
from the ordinary clients, and they run in a process of their own, so that building 400 KB bodies does not
take the benchmark's Python interpreter from the server. Every attack is a request that reaches a route, so
the server's audit log must have one line for each: ``run_hostile`` returns how many each kind sent, and
the statuses they got (None: the connection ended without an answer, as the attacker meant it to).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any, Awaitable, Callable

__all__ = ["HOSTILE_KINDS", "SOURCE", "run_hostile"]

SOURCE = "127.0.0.2"
FLOOD = 32  # concurrent requests in one burst of the flood
PAUSE_S = 0.5  # between two attempts of one kind: the attackers share the benchmark's CPUs, a remote one would not


def _chat(model: str, messages: list[dict[str, str]], **fields: Any) -> bytes:
    return json.dumps({"model": model, "messages": messages, **fields}).encode()


async def _exchange(host: str, port: int, head: bytes, body: bytes = b"", *, drip_s: float | None = None,
                    first_line_only: bool = False) -> int | None:
    """Send ``head`` and ``body`` (``drip_s``: one byte at a time, this far apart) on a fresh connection from
    ``SOURCE``; the status of the answer (None: closed without one, or when ``first_line_only`` and the
    first body bytes are in: the client then leaves)."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(SOURCE, 0))
    try:
        writer.write(head)
        if drip_s is None:
            writer.write(body)
        else:
            for byte in body:
                reading = asyncio.ensure_future(reader.read(1))
                done, _ = await asyncio.wait([reading], timeout=drip_s)
                if done:  # the server answered (408) before the body was in
                    rest = await reader.read(64)
                    return _status(reading.result() + rest)
                reading.cancel()
                writer.write(bytes([byte]))
        await writer.drain()
        reply = await reader.readuntil(b"\r\n\r\n")
        if first_line_only:
            await reader.read(1)  # the first byte of the stream: then the client vanishes
        return _status(reply)
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()


def _status(reply: bytes) -> int | None:
    parts = reply.split()
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None


def _request(path: str, body: bytes, *, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n"
            "Connection: close\r\n\r\n").encode()


def _kinds(host: str, port: int, model: str) -> dict[str, Callable[[], Awaitable[list[int | None]]]]:
    huge = _chat(model, [{"role": "user", "content": f"hello {i}"} for i in range(10_000)], max_tokens=4)
    bomb = _chat(model, [{"role": "user", "content": "all work and no play " * 15}] * 400, max_tokens=4)
    stream = _chat(model, [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}],
                   max_tokens=256, stream=True, temperature=0)
    ask = _chat(model, [{"role": "user", "content": "Hello?"}], max_tokens=4)
    chat = "/v1/chat/completions"

    async def one(head: bytes, body: bytes = b"", **kwargs: Any) -> list[int | None]:
        return [await _exchange(host, port, head, body, **kwargs)]

    async def flood() -> list[int | None]:
        return list(await asyncio.gather(*(_exchange(host, port, _request(chat, stream), stream, first_line_only=True)
                                           for _ in range(FLOOD))))

    return {
        "huge_chat": lambda: one(_request(chat, huge), huge),  # 10,000 messages, 400 KB
        "token_bomb": lambda: one(_request(chat, bomb), bomb),  # 400 long messages: far over the context
        "abandoned_stream": lambda: one(_request(chat, stream), stream, first_line_only=True),
        "no_body": lambda: one(_request(chat, b"", length=1000)),  # headers, then nothing
        "slowloris": lambda: one(_request(chat, ask), ask, drip_s=1.0),
        "flood": flood,  # a burst of abandoned streams from one address
    }


HOSTILE_KINDS = ("huge_chat", "token_bomb", "abandoned_stream", "no_body", "slowloris", "flood")


async def _run(url: str, model: str, kinds: tuple[str, ...], seconds: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    attacks = _kinds(host, int(port), model)
    deadline = time.monotonic() + seconds
    results: dict[str, dict[str, Any]] = {}

    async def loop(kind: str) -> None:
        statuses: Counter[str] = Counter()
        sent = 0
        while time.monotonic() < deadline:
            answers = await attacks[kind]()
            sent += len(answers)
            statuses.update(str(status) for status in answers)
            await asyncio.sleep(PAUSE_S)
        results[kind] = {"sent": sent, "statuses": dict(statuses)}

    cpu = time.process_time()
    await asyncio.gather(*(loop(kind) for kind in kinds))
    return {"kinds": results, "cpu_s": time.process_time() - cpu}


def run_hostile(url: str, model: str, kinds: tuple[str, ...], seconds: float) -> dict[str, Any]:
    """Run each kind of attack in a loop for ``seconds`` (the attempt under way at the end runs to its end):
    ``{"kinds": {kind: {"sent", "statuses"}}, "cpu_s": the attackers' own CPU seconds}``."""
    return asyncio.run(_run(url, model, kinds, seconds))
