"""The server with the real SmolLM2: the official ``openai`` client against uvicorn on loopback, the
``eco-unlearn serve`` command in a subprocess (SIGHUP reload), and the vLLM gateway's payload for the
real embedding matrix, checked by PromptEmbedsCheckingServer (tests/unit/vllm_checking_server.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch

from eco_unlearn import GuardedModel
from eco_unlearn.demo import keyword_demo_guard
from eco_unlearn.serve import LocalBackend, ServeConfig, create_app
from eco_unlearn.serve.embedding import load_embedding_only
from eco_unlearn.serve.gateway import VLLMGateway
from eco_unlearn.serve.server import ServerThread, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from vllm_checking_server import REPLY_PIECES, PromptEmbedsCheckingServer  # noqa: E402

FORGET = [{"role": "user", "content": "Who is Harry Potter's best friend?"}]
CLEAN = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def served(smollm2, demo, tmp_path_factory):
    model, tokenizer = smollm2
    audit = tmp_path_factory.mktemp("serve") / "audit.jsonl"
    config = ServeConfig(model_id="smollm2", audit_log=audit)
    with ServerThread(create_app(LocalBackend(model, tokenizer, demo, config))) as url:
        yield url, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0), audit


def test_chat_forgets_flagged_and_answers_clean(served, smollm2, demo):
    _, client, _ = served
    model, tokenizer = smollm2
    forgot = client.chat.completions.create(model="smollm2", messages=FORGET, max_tokens=12, temperature=0)
    text = forgot.choices[0].message.content
    assert text == GuardedModel(model, tokenizer, demo).generate([FORGET], max_new_tokens=12)[0]
    assert "Ron" in GuardedModel(model, tokenizer).generate([FORGET], max_new_tokens=12)[0]
    assert "Ron" not in text
    clean = client.chat.completions.create(model="smollm2", messages=CLEAN, max_tokens=10, temperature=0)
    assert "Paris" in clean.choices[0].message.content and clean.usage.completion_tokens <= 10


def test_stream_equals_whole_answer(served):
    _, client, _ = served
    whole = client.chat.completions.create(model="smollm2", messages=FORGET, max_tokens=8, temperature=0)
    stream = client.chat.completions.create(model="smollm2", messages=FORGET, max_tokens=8, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole.choices[0].message.content


def test_completion_stops_at_stop_sequence(served):
    _, client, _ = served
    r = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=12, temperature=0,
                                  stop=["."])
    assert r.choices[0].finish_reason == "stop" and "Paris" in r.choices[0].text and "." not in r.choices[0].text


def test_errors_then_keeps_serving(served):
    url, client, audit = served
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=CLEAN, max_tokens=100_000)
    assert info.value.body["param"] == "max_tokens"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=CLEAN, max_tokens=2)
    assert httpx.post(url + "/v1/chat/completions", content=b'{"model": "smollm2", "messages": [',
                      headers={"content-type": "application/json"}).status_code == 400
    assert client.chat.completions.create(model="smollm2", messages=CLEAN, max_tokens=3, temperature=0).choices[0].message.content
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["status"] for line in lines[-4:]] == [400, 404, 400, 200]


def _wait_health(url: str, process: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            return httpx.get(url + "/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise AssertionError("the server did not come up")


def test_cli_serve_and_sighup_reload(smollm2, tmp_path):
    model, _ = smollm2
    guard_dir, audit = tmp_path / "guard", tmp_path / "audit.jsonl"
    keyword_demo_guard(model).save(guard_dir)
    port = free_port()
    exe = Path(sys.executable).with_name("eco-unlearn")
    process = subprocess.Popen(
        [str(exe), "serve", "--guard", str(guard_dir), "--port", str(port), "--audit-log", str(audit),
         "--admin-token", "s3cret"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        health = _wait_health(url, process)
        assert health["guard"]["generation"] == 0 and "path" not in health["guard"]  # public: no forget scope
        admin = httpx.get(url + "/health", headers={"authorization": "Bearer s3cret"}).json()
        assert admin["guard"]["path"] == str(guard_dir) and admin["guard"]["version"] == health["guard"]["version"]
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="smollm2", messages=FORGET, max_tokens=3, temperature=0)
        assert r.choices[0].message.content
        keyword_demo_guard(model, strength=0.5).save(guard_dir)  # atomic replacement of the folder
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health").json()["guard"]["generation"] != 1:
            assert time.monotonic() < deadline, "SIGHUP did not reload the guard"
            time.sleep(0.2)
        assert httpx.get(url + "/health").json()["guard"]["version"] != health["guard"]["version"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    stderr = process.stderr.read()
    assert process.returncode in (0, -signal.SIGTERM), stderr  # uvicorn re-raises the signal once shut down
    assert "Application shutdown complete" in stderr and "SIGHUP: guard" in stderr and "Traceback" not in stderr
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert lines[0]["endpoint"] == "/v1/chat/completions" and lines[0]["flagged"]
    assert lines[1]["event"] == "reload" and lines[1]["via"] == "SIGHUP" and lines[1]["guard"]["generation"] == 1


@pytest.mark.parametrize("args, message", [
    (["--guard", "/nonexistent/guard"], "no guard folder"),
    (["--backend", "vllm"], "--vllm-url"),
    (["--on-classifier-error", "ignore"], "ignore"),
])
def test_cli_serve_bad_options(cli_main, args, message):
    result = cli_main("serve", *args)  # in this process: test_cli_serve_and_sighup_reload runs serve in a real one
    assert result.returncode == 2 and "error:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_gateway_sends_smollm2_corrupted_embeddings(smollm2, demo, tmp_path):
    model, tokenizer = smollm2
    embedder, gateway_tokenizer = load_embedding_only("smollm2")
    config = ServeConfig(model_id="smollm2", audit_log=None)
    with PromptEmbedsCheckingServer(hidden_size=model.config.hidden_size, model="HuggingFaceTB/SmolLM2-135M-Instruct") as upstream:
        gateway = VLLMGateway(embedder, gateway_tokenizer, demo, config, url=upstream.url,
                              upstream_model="HuggingFaceTB/SmolLM2-135M-Instruct", payload_dtype=torch.bfloat16)
        with ServerThread(create_app(gateway)) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            stream = client.chat.completions.create(model="smollm2", messages=FORGET, max_tokens=16, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "".join(REPLY_PIECES)
            client.chat.completions.create(model="smollm2", messages=CLEAN, max_tokens=16)
    flagged, clean = upstream.requests
    expected = GuardedModel(model, tokenizer, demo).prefill_inputs([FORGET]).inputs_embeds[0]
    assert flagged["kind"] == "embeds" and flagged["tensor"].dtype == torch.bfloat16
    assert torch.equal(flagged["tensor"], expected.to(torch.bfloat16))
    assert flagged["bytes"] < expected.numel() * 2 + 4096  # bfloat16, and only this prompt's rows
    assert clean["kind"] == "text" and clean["add_special_tokens"] is False
    assert clean["prompt"] == tokenizer.apply_chat_template(CLEAN, tokenize=False, add_generation_prompt=True)
