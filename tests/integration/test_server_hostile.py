"""The server with the real SmolLM2 and its chat template against hostile clients, where the real model and
template matter: the issue's 10,000-message chat, a prompt over the real 8,192-token context, linear-time
rendering of a long conversation under the real template (which adds its own system prompt), and a stream
abandoned while the real model decodes."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from eco_unlearn.runtime.prompts import render_prompt
from eco_unlearn.serve import LocalBackend, ServeConfig, create_app
from eco_unlearn.serve.server import ServerThread

pytestmark = [pytest.mark.integration, pytest.mark.hostile]


@pytest.fixture(scope="module")
def served(smollm2, demo, tmp_path_factory):
    model, tokenizer = smollm2
    audit = tmp_path_factory.mktemp("hostile") / "audit.jsonl"
    with ServerThread(create_app(LocalBackend(model, tokenizer, demo, ServeConfig(model_id="smollm2",
                                                                                 audit_log=audit)))) as url:
        yield url, audit


def lines(audit, expected, timeout=20.0):
    deadline = time.monotonic() + timeout
    while len(audit.read_text().splitlines()) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return [json.loads(line) for line in audit.read_text().splitlines()]


def test_the_issues_attacks_are_refused_in_under_a_second_with_default_bounds(served):
    url, audit = served
    huge = [{"role": "user", "content": f"hello {i}"} for i in range(10_000)]
    long = [{"role": "user", "content": "all work and no play makes Jack a dull boy " * 6}] * 300
    answers = []
    for messages in (huge, long):
        start = time.perf_counter()
        r = httpx.post(url + "/v1/chat/completions", json={"model": "smollm2", "messages": messages, "max_tokens": 4},
                       timeout=60)
        answers.append((r.status_code, r.json()["error"]["code"], time.perf_counter() - start < 1.0))
    assert answers == [(400, "too_many_messages", True), (400, "context_length_exceeded", True)]
    ok = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert ok.status_code == 200
    assert [line["status"] for line in lines(audit, 3)] == [400, 400, 200]


def test_a_long_conversation_renders_in_linear_time_with_exact_user_spans(smollm2):
    _, tokenizer = smollm2
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} about Harry"}
                for i in range(500)]
    start = time.perf_counter()
    rendered = render_prompt(messages, tokenizer)
    assert time.perf_counter() - start < 1.0  # rendering every prefix took tens of seconds
    assert [rendered.text[a:b] for a, b in rendered.user_spans] == [m["content"] for m in messages[::2]]
    assert rendered.text == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_an_abandoned_stream_stops_within_two_decode_steps(served):
    url, audit = served
    before = len(audit.read_text().splitlines())
    body = {"model": "smollm2", "max_tokens": 200, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
        seen = 0
        for line in response.iter_lines():
            seen += '"content":' in line and '"content":""' not in line
            if seen >= 3:
                break
    line = lines(audit, before + 1)[-1]
    assert line["outcome"] == "client_disconnected" and line["status"] == 200
    generated = line["prompts"][0]["completion_tokens"]
    assert generated < 200 and generated - line["generated_at_cancel"] <= 2, line
