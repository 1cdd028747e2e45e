"""The server against hostile clients, on loopback: the tiny random Llama through the real app and uvicorn.

Each case asserts the status the attacker gets, that an ordinary client is served meanwhile within a bound,
and that the audit log has exactly one line per request that reached a route. Decode steps are slowed to
``STEP_S`` where a case needs generation to take time (a forward hook on the shared model, removed after).
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from eco_unlearn.serve import LocalBackend, ServeConfig, create_app
from eco_unlearn.serve.audit import AuditLog
from eco_unlearn.serve.server import ServerThread
from unit_helpers import make_guard

pytestmark = pytest.mark.hostile

CLEAN = "The quick brown fox jumps over the lazy dog."
STEP_S = 0.03
ORDINARY = {"model": "tiny", "prompt": CLEAN, "max_tokens": 2, "temperature": 0}
LIMITS = dict(max_messages=64, max_prompt_chars=4000, max_prompts=4, body_timeout_s=0.5,
              max_concurrent_per_client=4, max_queue=8, batch_wait_ms=1.0)


class Audit:
    """The audit log of one server: the lines written since the last ``take``."""

    def __init__(self, path):
        self.path, self.seen = path, 0

    def lines(self):
        return [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []

    def take(self, expected, timeout=10.0):
        """The new lines, once there are ``expected`` of them (some are written just after the response)."""
        deadline = time.monotonic() + timeout
        while len(self.lines()) - self.seen < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        new = self.lines()[self.seen :]
        self.seen += len(new)
        assert len(new) == expected, [(line["endpoint"], line["status"]) for line in new]
        return new


@pytest.fixture(scope="module")
def served(model, tok, tmp_path_factory):
    """One server with small limits for most cases: (url, backend, audit)."""
    folder = tmp_path_factory.mktemp("hostile")
    config = ServeConfig(model_id="tiny", audit_log=folder / "audit.jsonl", **LIMITS)
    backend = LocalBackend(model, tok, make_guard(model), config)
    with ServerThread(create_app(backend)) as url:
        audit = Audit(folder / "audit.jsonl")
        yield url, backend, audit


@pytest.fixture
def server(served):
    url, backend, audit = served
    audit.take(len(audit.lines()) - audit.seen)  # whatever an earlier case left
    return url, backend, audit


@pytest.fixture
def slow_steps(model):
    """Each forward pass of the shared model takes at least STEP_S."""
    handle = model.register_forward_hook(lambda *args: time.sleep(STEP_S))
    yield
    handle.remove()


def ordinary(url, source="127.0.0.1"):
    """Seconds an ordinary 2-token completion takes (from ``source``, a loopback address)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as http:
        start = time.perf_counter()
        r = http.post(url + "/v1/completions", json=ORDINARY)
    assert r.status_code == 200, r.text
    return time.perf_counter() - start


def raw(url, data: bytes, *, read=True, timeout=5.0):
    """Send ``data`` on a fresh connection; the status of the answer (None if the server closed silently)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return None
        reply = b""
        try:
            while b"\r\n" not in reply and (chunk := sock.recv(4096)):
                reply += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return int(reply.split()[1]) if reply.startswith(b"HTTP/1.1") else None


def headers_only(path, length, extra=b""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
            .encode() + extra + b"\r\n")


def test_ten_thousand_message_chat_is_refused_in_under_a_second(server):
    url, _, audit = server
    messages = [{"role": "user", "content": f"hello {i}"} for i in range(10_000)]
    body = {"model": "tiny", "messages": messages, "max_tokens": 4}
    start = time.perf_counter()
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
    assert time.perf_counter() - start < 1.0
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_messages"
    assert ordinary(url) < 2.0
    refused, _ = audit.take(2)
    assert refused["status"] == 400 and refused["outcome"] == "refused" and refused["client"] == "127.0.0.1"


def test_prompts_over_the_limits_are_refused_before_rendering(server, encodings):
    url, _, audit = server
    chars = {"model": "tiny", "prompt": "x" * 5000, "max_tokens": 2}
    many = {"model": "tiny", "prompt": ["hi"] * 5, "max_tokens": 2}
    tokens = {"model": "tiny", "messages": [{"role": "user", "content": "word " * 70}] * 2, "max_tokens": 2}
    codes = []
    for path, body in [("/v1/completions", chars), ("/v1/completions", many), ("/v1/chat/completions", tokens)]:
        r = httpx.post(url + path, json=body)
        codes.append((r.status_code, r.json()["error"]["code"]))
    assert codes == [(400, "prompt_too_long"), (400, "too_many_prompts"), (400, "context_length_exceeded")]
    assert encodings["rendered"] == []  # refused before any chat template was rendered
    assert [line["status"] for line in audit.take(3)] == [400, 400, 400]


def test_a_disconnected_stream_stops_within_two_decode_steps_and_its_batch_goes_on(server, slow_steps, guarded):
    url, backend, audit = server
    stream = {"model": "tiny", "prompt": CLEAN, "max_tokens": 100, "temperature": 0, "stream": True}
    kept = {"model": "tiny", "prompt": "Hello there", "max_tokens": 12, "temperature": 0}
    batches = len(backend.batcher.batches)
    with ThreadPoolExecutor(1) as pool:
        with httpx.stream("POST", url + "/v1/completions", json=stream, timeout=30) as response:
            other = pool.submit(httpx.post, url + "/v1/completions", json=kept, timeout=30)  # joins the batch
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            time.sleep(5 * STEP_S)
        r = other.result()  # the connection above is closed: the client has gone
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == guarded.generate("Hello there", max_new_tokens=12)[0]
    assert len(backend.batcher.batches) - batches <= 2
    lines = {line["stream"]: line for line in audit.take(2)}
    gone = lines[True]
    assert gone["status"] == 200 and gone["outcome"] == "client_disconnected"
    generated = gone["prompts"][0]["completion_tokens"]
    assert generated < 100 and generated - gone["generated_at_cancel"] <= 2, gone
    assert gone["prompts"][0]["finish_reason"] == "cancelled"


def test_a_client_that_gives_up_on_a_plain_request_is_cancelled(server, slow_steps):
    url, _, audit = server
    body = {"model": "tiny", "prompt": CLEAN, "max_tokens": 100, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/completions", json=body, timeout=httpx.Timeout(10 * STEP_S, connect=5))
    (line,) = audit.take(1)
    assert line["status"] == 499 and line["outcome"] == "client_disconnected"
    assert line["prompts"][0]["completion_tokens"] - line["generated_at_cancel"] <= 2
    assert line["prompts"][0]["completion_tokens"] < 100


def test_a_body_never_sent_is_408_and_a_body_cut_short_is_400(server):
    url, _, audit = server
    start = time.perf_counter()
    assert raw(url, headers_only("/v1/completions", 100)) == 408
    assert time.perf_counter() - start < 3.0
    raw(url, headers_only("/v1/chat/completions", 100) + b'{"model": ', read=False)  # then closes
    slow = headers_only("/v1/completions", 60)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:  # slowloris: a byte now and then
        sock.sendall(slow)
        for byte in b'{"model": "tiny", ':
            if select.select([sock], [], [], 0.05)[0]:  # the server has answered
                break
            sock.sendall(bytes([byte]))
        assert b" 408 " in sock.recv(4096)
    assert ordinary(url) < 2.0
    lines = audit.take(4)
    assert sorted((line["status"], (line.get("error") or {}).get("code")) for line in lines) == [
        (200, None), (400, "incomplete_body"), (408, "request_timeout"), (408, "request_timeout")]


def test_huge_headers_and_many_idle_connections(server):
    url, _, audit = server
    huge = headers_only("/v1/completions", 2, b"X-Junk: " + b"a" * 200_000 + b"\r\n") + b"{}"
    status = raw(url, huge)
    assert status is None or 400 <= status < 500  # refused by the HTTP parser, before any route
    host, port = url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(200)]
    try:
        assert ordinary(url) < 2.0
    finally:
        for sock in idle:
            sock.close()
    lines = audit.take(1)  # the huge headers never reached a route
    assert lines[0]["status"] == 200


def test_one_address_gets_429_beyond_its_concurrency_and_others_are_served(server, slow_steps):
    url, _, audit = server
    body = {"model": "tiny", "prompt": CLEAN, "max_tokens": 20, "temperature": 0}
    with ThreadPoolExecutor(10) as pool:
        flood = [pool.submit(httpx.post, url + "/v1/completions", json=body, timeout=30) for _ in range(9)]
        time.sleep(0.2)
        other = ordinary(url, source="127.0.0.2")  # another address is not limited by the first one's requests
        answers = [f.result() for f in flood]
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) <= 4 and statuses.count(429) >= 5 and set(statuses) == {200, 429}
    assert all(r.headers["retry-after"] == "1" for r in answers if r.status_code == 429)
    assert other < 3.0
    lines = audit.take(10)
    assert sum(line["status"] == 429 for line in lines) == statuses.count(429)
    assert {line["client"] for line in lines} == {"127.0.0.1", "127.0.0.2"}


def test_a_full_queue_answers_429_with_retry_after(model, tok, tmp_path, slow_steps):
    config = ServeConfig(model_id="tiny", audit_log=tmp_path / "audit.jsonl", max_queue=1, max_batch=1,
                         max_concurrent_per_client=50)
    body = {"model": "tiny", "prompt": CLEAN, "max_tokens": 10, "temperature": 0}
    with ServerThread(create_app(LocalBackend(model, tok, make_guard(model), config))) as url:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: httpx.post(url + "/v1/completions", json=body, timeout=30), range(8)))
    busy = [r for r in answers if r.status_code == 429]
    assert busy and all(r.json()["error"]["code"] == "server_busy" and int(r.headers["retry-after"]) >= 1 for r in busy)
    assert {r.status_code for r in answers} == {200, 429}
    assert len(Audit(tmp_path / "audit.jsonl").take(8)) == 8


def test_the_request_deadline_answers_503_streamed_or_not(model, tok, tmp_path, slow_steps):
    config = ServeConfig(model_id="tiny", audit_log=tmp_path / "audit.jsonl", request_timeout_s=0.4)
    body = {"model": "tiny", "prompt": CLEAN, "max_tokens": 100, "temperature": 0}
    with ServerThread(create_app(LocalBackend(model, tok, make_guard(model), config))) as url:
        start = time.perf_counter()
        plain = httpx.post(url + "/v1/completions", json=body, timeout=30)
        took = time.perf_counter() - start
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=30) as response:
            events = [line for line in response.iter_lines() if line.startswith("data:")]
        ok = httpx.post(url + "/v1/completions", json=ORDINARY, timeout=30)
    assert plain.status_code == 503 and plain.json()["error"]["code"] == "deadline_exceeded" and took < 2.0
    assert events[-1] == "data: [DONE]" and json.loads(events[-2][5:])["error"]["code"] == "deadline_exceeded"
    assert ok.status_code == 200
    lines = Audit(tmp_path / "audit.jsonl").take(3)
    assert [line["outcome"] for line in lines] == ["deadline_exceeded", "deadline_exceeded", "completed"]
    assert all(line["prompts"][0]["completion_tokens"] < 100 for line in lines[:2])


def test_concurrent_reloads_while_serving(model, tok, tmp_path):
    folder = tmp_path / "guard"
    make_guard(model).save(folder)
    config = ServeConfig(model_id="tiny", guard_path=str(folder), admin_token="s3cret",
                         audit_log=tmp_path / "audit.jsonl", max_concurrent_per_client=32)
    admin = {"authorization": "Bearer s3cret"}
    with ServerThread(create_app(LocalBackend(model, tok, make_guard(model), config))) as url:
        with ThreadPoolExecutor(8) as pool:
            reloads = [pool.submit(httpx.post, url + "/v1/guard/reload", headers=admin, timeout=30) for _ in range(6)]
            served = [pool.submit(httpx.post, url + "/v1/completions", json=ORDINARY, timeout=30) for _ in range(6)]
            statuses = [f.result().status_code for f in reloads + served]
        generation = httpx.get(url + "/health").json()["guard"]["generation"]
    assert statuses == [200] * 12 and generation == 6
    assert len(Audit(tmp_path / "audit.jsonl").take(12)) == 12


def test_a_request_in_flight_is_on_disk_and_a_crash_loses_no_trace(served, slow_steps, tmp_path):
    url, _, audit = served
    body = {"model": "tiny", "prompt": CLEAN, "max_tokens": 30, "temperature": 0}
    done = threading.Event()
    thread = threading.Thread(target=lambda: (httpx.post(url + "/v1/completions", json=body,
                                                         headers={"x-request-id": "in-flight-1"}, timeout=30),
                                              done.set()))
    thread.start()
    deadline = time.monotonic() + 10
    while not done.is_set() and time.monotonic() < deadline:
        journals = list(audit.path.parent.glob("audit.jsonl.pending-*"))
        if any("in-flight-1" in j.read_text() for j in journals):
            break
        time.sleep(0.01)
    assert not done.is_set()  # journalled while it is still in flight
    assert "in-flight-1" not in audit.path.read_text()
    thread.join()
    assert [line["request_id"] for line in audit.take(1)] == ["in-flight-1"]
    # A process that accepted a request and was killed before it ended: the next log writes its line.
    path = tmp_path / "audit.jsonl"
    child = os.fork()
    if child == 0:  # killed right after accepting: no line, no cleanup
        AuditLog(path).accept({"request_id": "lost-1", "endpoint": "/v1/completions"})
        os._exit(9)
    os.waitpid(child, 0)
    log = AuditLog(path)
    log.close()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["request_id"] == "lost-1" and line["outcome"] == "interrupted" and log.recovered == 1
    assert not list(tmp_path.glob("audit.jsonl.pending-*"))
