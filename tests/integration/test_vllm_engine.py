"""The vLLM gateway against a real vLLM engine (the CPU build, scripts/vllm-server), not a stand-in.

One engine for the session (conftest.py launches it at collection, so it boots while the earlier tests run),
and ``eco-unlearn serve --backend vllm`` in front of it (a subprocess, with the keyword demo guard), talked to
with the official ``openai`` client. The module skips, saying why, where the engine cannot start (no vLLM
virtualenv: ``scripts/vllm-server --install-only``; ECO_UNLEARN_VLLM=0). The engine-killing test comes last in
the module: it starts the engine again on the same port, and the check that the gateway answers once the engine
is back runs last in the session (marker ``last``), the engine booting meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from eco_unlearn import GuardedModel
from eco_unlearn.bench.load.agreement import agreement_prompts, compare_answers
from eco_unlearn.serve import LocalBackend, ServeConfig, create_app
from eco_unlearn.serve.server import ServerThread, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_engine import START_TIMEOUT  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

FORGET = [{"role": "user", "content": "Who is Harry Potter's best friend?"}]
CLEAN = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="session")
def gateway(engine, smollm2, demo, tmp_path_factory):
    """``eco-unlearn serve --backend vllm`` in front of the engine: (url, openai client, audit log path)."""
    folder = tmp_path_factory.mktemp("gateway")
    demo.save(folder / "guard")
    port, audit = free_port(), folder / "audit.jsonl"
    exe = Path(sys.executable).with_name("eco-unlearn")
    process = subprocess.Popen(
        [str(exe), "serve", "--backend", "vllm", "--vllm-url", engine.url, "--guard", str(folder / "guard"),
         "--served-model-name", "smollm2", "--port", str(port), "--audit-log", str(audit), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=(folder / "gateway.log").open("w"), env={**os.environ, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, (folder / "gateway.log").read_text()
        try:
            httpx.get(url + "/health", timeout=2).raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.3)
    yield url, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0), audit
    process.terminate()
    try:
        process.wait(timeout=60)  # uvicorn lets requests in flight finish for up to 30 s
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def direct(engine):
    """The engine itself, no guard: vLLM's own answers."""
    return openai.OpenAI(base_url=engine.url + "/v1", api_key="unused", max_retries=0)


def _requests_running(engine) -> float:
    """The engine's own count of requests it is generating (its Prometheus metrics)."""
    metrics = httpx.get(engine.url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("vllm:num_requests_running"))


def _chat(client, messages, n=16, **kw):
    return client.chat.completions.create(model="smollm2", messages=messages, max_tokens=n, temperature=0, **kw)


def test_unflagged_prompt_gets_vllms_own_answer(gateway, direct, smollm2):
    _, client, audit = gateway
    ours = _chat(client, CLEAN).choices[0].message.content
    assert ours == _chat(direct, CLEAN).choices[0].message.content
    model, tokenizer = smollm2
    assert ours == GuardedModel(model, tokenizer).generate([CLEAN], max_new_tokens=16)[0] and "Paris" in ours
    assert json.loads(audit.read_text().splitlines()[-1])["flagged"] is False


def test_flagged_prompt_answered_from_corrupted_embeddings(gateway, direct, smollm2, demo):
    _, client, audit = gateway
    model, tokenizer = smollm2
    ours = _chat(client, FORGET, 24).choices[0].message.content
    line = json.loads(audit.read_text().splitlines()[-1])
    assert line["flagged"] is True and line["corrupted_tokens"] > 0
    # greedy in float32: the engine's answer from our prompt_embeds is the local guarded model's, token for token
    assert ours == GuardedModel(model, tokenizer, demo).generate([FORGET], max_new_tokens=24)[0]
    assert "Ron" in _chat(direct, FORGET, 24).choices[0].message.content  # vLLM knows the fact...
    assert "Ron" not in ours  # ...and forgets it behind the gateway


@pytest.mark.parametrize("messages", [FORGET, CLEAN], ids=["flagged", "unflagged"])
def test_chat_stream_equals_whole_answer(gateway, messages):
    _, client, _ = gateway
    whole = _chat(client, messages, 12).choices[0].message.content
    stream = _chat(client, messages, 12, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole


@pytest.mark.parametrize("prompt,flagged", [("Harry Potter's best friend is named", True),
                                            ("The capital of France is", False)], ids=["flagged", "unflagged"])
def test_completions_stream_and_not(gateway, direct, smollm2, demo, prompt, flagged):
    _, client, _ = gateway
    kw = dict(model="smollm2", prompt=prompt, max_tokens=10, temperature=0)
    whole = client.completions.create(**kw)
    streamed = "".join(c.choices[0].text for c in client.completions.create(**kw, stream=True) if c.choices)
    text = whole.choices[0].text
    assert streamed == text and whole.usage.completion_tokens <= 10
    model, tokenizer = smollm2
    assert text == GuardedModel(model, tokenizer, demo).generate([prompt], max_new_tokens=10)[0]
    assert (text == direct.completions.create(**kw).choices[0].text) is not flagged


def test_fixed_prompts_agree_with_local_backend(gateway, smollm2, demo, tmp_path):
    """The first 4 + 4 of the 40 fixed prompts (all 40: `eco-unlearn bench serve --vllm-url`, a benchmark)."""
    url, _, _ = gateway
    model, tokenizer = smollm2
    local = LocalBackend(model, tokenizer, demo, ServeConfig(model_id="smollm2", audit_log=tmp_path / "a.jsonl"))
    with ServerThread(create_app(local)) as local_url:
        report = compare_answers(url, local_url, model, tokenizer, demo, prompts=agreement_prompts(4), max_tokens=12)
    assert [r.flagged for r in report.rows] == [True] * 4 + [False] * 4
    assert report.unexplained == 0 and report.equal >= 7, [r.explanation for r in report.rows if not r.equal]


def test_payload_vllm_refuses_is_a_clean_400(gateway):
    url, client, _ = gateway
    # fits SmolLM2's 8192-token context, so the gateway forwards it; the engine runs with --max-model-len 2048
    with pytest.raises(openai.BadRequestError) as info:
        _chat(client, FORGET, 4000)
    assert info.value.body["code"] == "upstream_rejected" and "vLLM server refused" in info.value.body["message"]
    assert _chat(client, CLEAN, 3).choices[0].message.content  # and it keeps serving


def test_engine_killed_mid_request_gives_502_then_recovers(gateway, engine):
    url, client, _ = gateway
    result: dict = {}

    def long_request() -> None:
        try:
            _chat(client, FORGET, 1500)
        except openai.APIStatusError as exc:
            result["error"] = exc

    thread = threading.Thread(target=long_request)
    thread.start()
    deadline = time.monotonic() + 60
    while _requests_running(engine) < 1:  # until the engine is generating it
        assert thread.is_alive() and time.monotonic() < deadline, f"the long request never ran on the engine: {result}"
        time.sleep(0.1)
    engine.kill()
    thread.join(60)
    assert not thread.is_alive(), "the request outlived the engine by a minute"
    assert result["error"].status_code == 502 and result["error"].body["code"] in ("upstream_unreachable", "upstream_error")
    with pytest.raises(openai.APIStatusError) as info:  # no engine at all: 502, at once
        _chat(client, CLEAN, 3)
    assert info.value.status_code == 502
    engine.launch()  # on the same port; test_gateway_answers_again_once_the_engine_is_back waits for it


@pytest.mark.last
def test_gateway_answers_again_once_the_engine_is_back(gateway, engine):
    """After test_engine_killed_mid_request_gives_502_then_recovers: the same gateway, no restart of its own."""
    _, client, _ = gateway
    assert engine.launches == 2, "run with test_engine_killed_mid_request_gives_502_then_recovers, which restarts the engine"
    engine.wait(START_TIMEOUT)
    assert "Paris" in _chat(client, CLEAN, 8).choices[0].message.content
