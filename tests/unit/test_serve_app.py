"""The OpenAI-compatible server on the tiny random Llama: a real uvicorn server on loopback, the real
``openai`` client and raw HTTP for what the client would never send.

The guard (unit_helpers.make_guard) flags 'Harry Potter' / 'Hogwarts' and adds gaussian noise to all user
tokens but the last; answers through the server must equal ``GuardedModel.generate`` with that guard.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch

from eco_unlearn import CorruptionSpec, Guard, GuardedModel, Target, TokenSelection
from eco_unlearn.classifier import CLASSIFIERS, ConstantClassifier
from eco_unlearn.serve import LocalBackend, ServeConfig, create_app
from eco_unlearn.serve.failclosed import NO_TOKEN_TARGET
from eco_unlearn.serve.server import ServerThread
from unit_helpers import StatelessClassifier, exploding_guard, make_guard

FLAGGED = "Tell me about Harry Potter"
CLEAN = "The quick brown fox jumps over the lazy dog."
CHAT_FLAGGED = [{"role": "user", "content": "Who is Harry Potter?"}]
CHAT_CLEAN = [{"role": "user", "content": "What is the capital of France?"}]


def start(model, tok, guard, tmp_path, **config):
    config = ServeConfig(model_id="tiny", audit_log=tmp_path / "audit.jsonl", **config)
    return ServerThread(create_app(LocalBackend(model, tok, guard, config)))


def audit_lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


@pytest.fixture
def server(model, tok, tmp_path):
    with start(model, tok, make_guard(model), tmp_path) as url:
        yield url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def shared(model, tok, tmp_path_factory):
    """One server for the many bad-input cases: it must keep serving after each of them."""
    with start(model, tok, make_guard(model), tmp_path_factory.mktemp("shared")) as url:
        yield url, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_completion_equals_guarded_model(client, guarded, tok):
    """Flagged and clean prompts through the server give exactly GuardedModel.generate's greedy text."""
    for prompt in (FLAGGED, CLEAN):
        r = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0)
        expected = guarded.generate(prompt, max_new_tokens=6)[0]
        assert r.choices[0].text == expected
        assert r.usage.prompt_tokens == len(tok(prompt)["input_ids"])
        assert r.usage.completion_tokens == 6 and r.choices[0].finish_reason == "length"
        assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "tiny"


def test_chat_equals_guarded_model_and_is_guarded(client, guarded, bare):
    r = client.chat.completions.create(model="tiny", messages=CHAT_FLAGGED, max_tokens=6, temperature=0)
    assert r.choices[0].message.content == guarded.generate([CHAT_FLAGGED], max_new_tokens=6)[0]
    assert r.choices[0].message.content != bare.generate([CHAT_FLAGGED], max_new_tokens=6)[0]
    r = client.chat.completions.create(model="tiny", messages=CHAT_CLEAN, max_tokens=6, temperature=0)
    assert r.choices[0].message.content == bare.generate([CHAT_CLEAN], max_new_tokens=6)[0]


def test_several_prompts_in_one_completion_request(client, guarded):
    r = client.completions.create(model="tiny", prompt=[FLAGGED, CLEAN], max_tokens=4, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    assert [c.text for c in r.choices] == guarded.generate([FLAGGED, CLEAN], max_new_tokens=4)
    assert r.usage.completion_tokens == 8


def test_stop_sequence_cuts_the_text(client, guarded):
    full = guarded.generate(CLEAN, max_new_tokens=12)[0]
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip(), full
    r = client.completions.create(model="tiny", prompt=CLEAN, max_tokens=12, temperature=0, stop=[stop, "zzzz"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[: full.index(stop)]


def test_stream_chat_and_completion_match_non_streamed(client):
    whole = client.chat.completions.create(model="tiny", messages=CHAT_FLAGGED, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=CHAT_FLAGGED, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 8 and not chunks[-1].choices
    pieces = list(client.completions.create(model="tiny", prompt=CLEAN, max_tokens=5, temperature=0, stream=True))
    plain = client.completions.create(model="tiny", prompt=CLEAN, max_tokens=5, temperature=0)
    assert "".join(p.choices[0].text for p in pieces) == plain.choices[0].text


def test_sse_wire_format(server):
    body = {"model": "tiny", "prompt": CLEAN, "max_tokens": 3, "temperature": 0, "stream": True}
    with httpx.stream("POST", server + "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_tiny_temperature_is_greedy(shared, guarded):
    """A temperature too small to divide the logits by (they would overflow) samples greedily, as in vLLM."""
    _, client = shared
    r = client.completions.create(model="tiny", prompt=CLEAN, max_tokens=4, temperature=1e-320)
    assert r.choices[0].text == guarded.generate(CLEAN, max_new_tokens=4)[0]


def test_seeded_sampling_repeats(client):
    kwargs = dict(model="tiny", prompt=CLEAN, max_tokens=8, temperature=1.0, top_p=0.9)
    a = client.completions.create(seed=7, **kwargs).choices[0].text
    assert a == client.completions.create(seed=7, **kwargs).choices[0].text
    others = {client.completions.create(seed=s, **kwargs).choices[0].text for s in (8, 9, 10)}
    assert others - {a}


def test_concurrent_requests_are_batched_and_equal_alone(model, tok, tmp_path, guarded):
    prompts = [FLAGGED, CLEAN, "Who is Harry Potter?", "Paris is nice", "Hogwarts and Harry Potter", "Hello"]
    config = ServeConfig(model_id="tiny", batch_wait_ms=50)
    backend = LocalBackend(model, tok, make_guard(model), config)
    with ServerThread(create_app(backend)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with ThreadPoolExecutor(len(prompts)) as pool:
            texts = list(pool.map(lambda p: client.completions.create(
                model="tiny", prompt=p, max_tokens=5 + len(p) % 3, temperature=0).choices[0].text, prompts))
    assert max(backend.batcher.batches) > 1, backend.batcher.batches
    assert texts == [guarded.generate(p, max_new_tokens=5 + len(p) % 3)[0] for p in prompts]


def test_each_prompt_is_rendered_and_tokenized_once_per_request(server, tok, guarded, encodings):
    """prepare renders and tokenizes each prompt; the worker plans and generates from those tokens."""
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    rendered = tok.apply_chat_template(CHAT_FLAGGED, tokenize=False, add_generation_prompt=True)
    def chat():
        r = client.chat.completions.create(model="tiny", messages=CHAT_FLAGGED, max_tokens=4, temperature=0)
        return [r.choices[0].message.content]

    def two_prompts():
        r = client.completions.create(model="tiny", prompt=[FLAGGED, CLEAN], max_tokens=4, temperature=0)
        return [c.text for c in r.choices]

    def streamed():
        chunks = client.completions.create(model="tiny", prompt=FLAGGED, max_tokens=4, temperature=0, stream=True)
        return ["".join(c.choices[0].text for c in chunks)]

    requests = [(chat, [CHAT_FLAGGED], [rendered]), (two_prompts, [FLAGGED, CLEAN], [FLAGGED, CLEAN]),
                (streamed, [FLAGGED], [FLAGGED])]
    for send, prompts, texts in requests:
        encodings["rendered"].clear()
        encodings["tokenized"].clear()
        answers = send()
        assert encodings == {"rendered": prompts, "tokenized": texts}
        assert answers == guarded.generate(prompts, max_new_tokens=4)  # still guarded, as GuardedModel does


def test_models_health_and_classify(server):
    models = httpx.get(server + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"] and models["object"] == "list"
    assert httpx.get(server + "/v1/models/tiny").json()["id"] == "tiny"
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and set(health["guard"]) == {"version", "generation"}
    r = httpx.post(server + "/v1/guard/classify", json={"input": [FLAGGED, CLEAN]}).json()
    assert [d["flagged"] for d in r["data"]] == [True, False]
    assert r["data"][0]["targets"] == ["hp"] and r["data"][0]["scores"]["hp"] == 1.0 and r["thresholds"] == {"hp": 0.5}


BAD_REQUESTS = [
    ("/v1/completions", b"{not json", 400, None),
    ("/v1/completions", b"", 400, None),
    ("/v1/completions", {"model": "tiny"}, 400, "prompt"),
    ("/v1/completions", {"prompt": "hi"}, 400, "model"),
    ("/v1/completions", {"model": "tiny", "prompt": 5}, 400, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": "  "}, 400, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": "5"}, 400, "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 10_000}, 400, "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi " * 200, "max_tokens": 5}, 400, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "temperature": 3}, 400, "temperature"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "temperature": "hot"}, 400, "temperature"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "top_p": 0}, 400, "top_p"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "n": 2}, 400, "n"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "logprobs": 2}, 400, "logprobs"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "temperature": 0.5, "seed": 2**70}, 400, "seed"),
    ("/v1/completions", b'{"model": "tiny", "prompt": "hi \\udcff"}', 400, "prompt"),  # an unpaired surrogate
    ("/v1/chat/completions", b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}', 400,
     "messages.0.content"),
    ("/v1/guard/classify", b'{"input": ["Harry Potter \\udfff"]}', 400, "input"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "hi"}, 404, "model"),
    ("/v1/chat/completions", {"model": "tiny", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user"}]}, 400, "messages.0.content"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "system", "content": "be nice"}]}, 400, "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": "hi"}, 400, "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": CHAT_CLEAN, "stream": "yes"}, 400, "stream"),
    ("/v1/guard/classify", {"input": []}, 400, "input"),
    ("/v1/nope", {"model": "tiny"}, 404, None),
]


@pytest.mark.parametrize("path, body, status, param", BAD_REQUESTS)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(shared, path, body, status, param):
    server, client = shared
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    if isinstance(body, bytes):
        kwargs["headers"] = {"content-type": "application/json"}
    r = httpx.post(server + path, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    assert client.completions.create(model="tiny", prompt=CLEAN, max_tokens=2, temperature=0).choices[0].text


def test_openai_client_raises_typed_errors(shared):
    _, client = shared
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="gpt-4", prompt="hi", max_tokens=2)
    assert "tiny" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=CHAT_CLEAN, max_tokens=10_000)
    assert info.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=2)


def test_oversized_body_is_413(model, tok, tmp_path):
    with start(model, tok, make_guard(model), tmp_path, max_body_bytes=2048) as url:
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "x" * 5000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        chunked = httpx.post(url + "/v1/completions", content=iter([b'{"model": "tiny", "prompt": "', b"y" * 4096, b'"}']))
        assert chunked.status_code == 413
        ok = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2})
        assert ok.status_code == 200
    assert [line["status"] for line in audit_lines(tmp_path)] == [413, 413, 200]


def test_method_not_allowed_is_openai_style(server):
    r = httpx.get(server + "/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_audit_one_line_per_request_prompts_hashed(model, tok, tmp_path):
    import hashlib

    with start(model, tok, make_guard(model), tmp_path) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        client.completions.create(model="tiny", prompt=FLAGGED, max_tokens=3, temperature=0)
        list(client.chat.completions.create(model="tiny", messages=CHAT_CLEAN, max_tokens=3, temperature=0, stream=True))
        httpx.post(url + "/v1/completions", json={"model": "tiny"})
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.completions.create(model="tiny", prompt=f"{CLEAN} {i}", max_tokens=2), range(16)))
    lines = audit_lines(tmp_path)
    assert len(lines) == 3 + 16 and len({line["request_id"] for line in lines}) == len(lines)
    first, chat, bad = lines[:3]
    assert first["flagged"] and first["targets"] == ["hp"] and first["corrupted_tokens"] == 4
    assert first["prompts"][0]["sha256"] == hashlib.sha256(FLAGGED.encode()).hexdigest()
    assert first["prompts"][0]["scores"] == {"hp": 1.0} and first["latency_ms"] > 0 and first["status"] == 200
    assert chat["stream"] and not chat["flagged"] and chat["prompts"][0]["completion_tokens"] == 3
    assert bad["status"] == 400 and bad["error"]["code"] == "missing_required_parameter" and not bad["prompts"]
    text = (tmp_path / "audit.jsonl").read_text()
    assert "Harry" not in text and "quick brown" not in text


def test_audit_prompts_opt_in(model, tok, tmp_path):
    with start(model, tok, make_guard(model), tmp_path, audit_prompts=True) as url:
        httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": CHAT_FLAGGED, "max_tokens": 2})
    assert audit_lines(tmp_path)[0]["prompts"][0]["prompt"] == CHAT_FLAGGED


def test_request_id_header_is_echoed_and_audited(server, tmp_path):
    r = httpx.post(server + "/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 1},
                   headers={"x-request-id": "my-req-42"})
    assert r.headers["x-request-id"] == "my-req-42" and r.json()["id"] == "cmpl-my-req-42"
    assert audit_lines(tmp_path)[-1]["request_id"] == "my-req-42"


def test_classifier_failure_refused_with_503(exploding_kind, model, tok, tmp_path):
    with start(model, tok, exploding_guard(model), tmp_path) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as info:  # the client's class for 5xx
            client.completions.create(model="tiny", prompt="EXPLODE about Harry Potter", max_tokens=3)
        assert info.value.status_code == 503 and info.value.body["code"] == "classifier_unavailable"
        r = httpx.post(url + "/v1/chat/completions", json={
            "model": "tiny", "stream": True, "max_tokens": 3, "messages": [{"role": "user", "content": "EXPLODE"}]})
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
        assert httpx.post(url + "/v1/guard/classify", json={"input": "EXPLODE"}).status_code == 503
        ok = client.completions.create(model="tiny", prompt=CLEAN, max_tokens=3, temperature=0)  # still serving
        assert ok.choices[0].text
    lines = audit_lines(tmp_path)
    assert [line["status"] for line in lines] == [503, 503, 503, 200]
    assert "RuntimeError: classifier backend down" in lines[0]["prompts"][0]["classifier_error"]


def test_classifier_failure_corrupts_everything_when_configured(exploding_kind, model, tok, tmp_path):
    prompt = "EXPLODE this prompt"
    with start(model, tok, exploding_guard(model), tmp_path, on_classifier_error="corrupt") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        text = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0).choices[0].text
        batch = client.completions.create(model="tiny", prompt=[prompt, CLEAN], max_tokens=6, temperature=0)
    everything = Guard([Target("all", ConstantClassifier(1.0), CorruptionSpec("gaussian_first_n", 1.0),
                               tokens=TokenSelection("all"))], model_fingerprint=make_guard(model).model_fingerprint)
    expected = GuardedModel(model, tok, everything).generate(prompt, max_new_tokens=6)[0]
    assert text == expected != GuardedModel(model, tok).generate(prompt, max_new_tokens=6)[0]
    assert batch.choices[0].text == expected  # one failing prompt does not take its batch-mate down
    assert batch.choices[1].text == GuardedModel(model, tok).generate(CLEAN, max_new_tokens=6)[0]
    line = audit_lines(tmp_path)[0]
    assert line["status"] == 200 and line["targets"] == ["classifier-error"]
    assert line["corrupted_tokens"] == len(tok(prompt)["input_ids"]) and line["prompts"][0]["classifier_error"]


def test_hot_reload(model, tok, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    make_guard(model).save(first)
    make_guard(model, keywords=("Paris",), name="paris").save(second)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "guard.json").write_text("{oops")
    config = ServeConfig(model_id="tiny", guard_path=str(first), admin_token="s3cret", audit_log=tmp_path / "audit.jsonl")
    backend = LocalBackend(model, tok, Guard.load(first), config)
    admin = {"authorization": "Bearer s3cret"}
    with ServerThread(create_app(backend)) as url:
        classify = lambda text: httpx.post(url + "/v1/guard/classify", json={"input": text}).json()["data"][0]["flagged"]
        assert classify("Harry Potter") and not classify("Paris")
        first_version = httpx.get(url + "/health").json()["guard"]["version"]
        assert httpx.post(url + "/v1/guard/reload", json={"path": str(second)}).status_code == 401
        assert httpx.post(url + "/v1/guard/reload", json={"path": str(second)}, headers={"authorization": "Bearer no"}).status_code == 401
        r = httpx.post(url + "/v1/guard/reload", json={"path": str(tmp_path / "broken")}, headers=admin)
        assert r.status_code == 400 and "previous one stays" in r.json()["error"]["message"]
        assert classify("Harry Potter")  # the old guard is still in force
        stream = httpx.stream("POST", url + "/v1/completions", json={
            "model": "tiny", "prompt": FLAGGED, "max_tokens": 40, "temperature": 0, "stream": True})
        with stream as response:  # a request in flight while the guard is swapped
            lines = response.iter_lines()
            next(lines)
            r = httpx.post(url + "/v1/guard/reload", json={"path": str(second)}, headers=admin)
            assert r.status_code == 200 and r.json()["guard"]["targets"] == ["paris"]
            assert [line for line in lines if line][-1] == "data: [DONE]"
        assert classify("Paris") and not classify("Harry Potter")
        assert httpx.get(url + "/health").json()["guard"]["generation"] == 1
        r = httpx.post(url + "/v1/guard/reload", headers=admin)  # no body: the folder loaded last, again
        assert r.status_code == 200 and r.json()["guard"]["path"] == str(second)
    audit = audit_lines(tmp_path)
    streamed = next(line for line in audit if line.get("stream"))
    assert streamed["flagged"] and streamed["guard"] == first_version != r.json()["guard"]["version"]
    reloads = [line for line in audit if line["endpoint"] == "/v1/guard/reload"]
    assert [line["status"] for line in reloads] == [401, 401, 400, 200, 200]


def test_reload_disabled_without_admin_token(server):
    r = httpx.post(server + "/v1/guard/reload", json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"


def test_unguarded_server(model, tok, tmp_path, bare):
    with start(model, tok, None, tmp_path) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        r = client.completions.create(model="tiny", prompt=FLAGGED, max_tokens=5, temperature=0)
        assert r.choices[0].text == bare.generate(FLAGGED, max_new_tokens=5)[0]
        assert httpx.post(url + "/v1/guard/classify", json={"input": FLAGGED}).json()["data"][0]["flagged"] is False
    assert audit_lines(tmp_path)[0]["guard"] == "none"


# ------------------------------------------------------------------------------------------ review fixes
def test_public_health_hides_the_forget_scope(model, tok, tmp_path):
    """/health shows anyone only an opaque digest and the reload count; the guard's folder and target names
    (the forget scope) only a request with the admin token."""
    folder = tmp_path / "secret-harry-potter-guard"
    make_guard(model).save(folder)
    config = ServeConfig(model_id="tiny", guard_path=str(folder), admin_token="s3cret")
    with ServerThread(create_app(LocalBackend(model, tok, Guard.load(folder), config))) as url:
        public = httpx.get(url + "/health")
        wrong = httpx.get(url + "/health", headers={"authorization": "Bearer nope"})
        admin = httpx.get(url + "/health", headers={"authorization": "Bearer s3cret"}).json()
    for response in (public, wrong):
        assert response.status_code == 200 and "secret-harry-potter" not in response.text and "hp" not in response.text
        body = response.json()
        assert set(body) == {"status", "model", "backend", "guard"} and set(body["guard"]) == {"version", "generation"}
        assert body["status"] == "ok" and body["backend"] == "local" and body["model"] == "tiny"
        assert body["guard"]["version"] == admin["guard"]["version"] and body["guard"]["generation"] == 0
    assert admin["guard"]["path"] == str(folder) and admin["guard"]["targets"] == ["hp"]
    assert admin["on_classifier_error"] == "refuse"


def test_health_without_admin_token_configured_is_always_public(server):
    body = httpx.get(server + "/health", headers={"authorization": "Bearer x"}).json()
    assert set(body["guard"]) == {"version", "generation"}


def test_create_app_takes_its_one_config_from_the_backend(model, tok):
    """There is one config: the backend's. create_app cannot be handed another one."""
    backend = LocalBackend(model, tok, make_guard(model), ServeConfig(model_id="tiny", on_classifier_error="corrupt"))
    with pytest.raises(TypeError):
        create_app(backend, ServeConfig(model_id="other"))
    with ServerThread(create_app(backend)) as url:
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "tiny"


def test_a_failing_batch_answers_each_request_500_and_keeps_serving(model, tok, tmp_path):
    """If the worker's batch run itself raises, every request of that batch gets a 500 with an OpenAI error
    body and an audit line with the error, instead of hanging; the next batch is served."""
    config = ServeConfig(model_id="tiny", audit_log=tmp_path / "audit.jsonl", batch_wait_ms=1000)  # one batch for both
    backend = LocalBackend(model, tok, make_guard(model), config)
    real, calls = backend.batcher.run, []

    def flaky(jobs):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise RuntimeError("worker exploded (simulated)")
        return real(jobs)

    backend.batcher.run = flaky
    bodies = [
        {"model": "tiny", "prompt": FLAGGED, "max_tokens": 3, "temperature": 0},
        {"model": "tiny", "prompt": CLEAN, "max_tokens": 3, "temperature": 0, "stream": True},
    ]
    with ServerThread(create_app(backend)) as url:
        with ThreadPoolExecutor(2) as pool:
            failed = list(pool.map(lambda b: httpx.post(url + "/v1/completions", json=b, timeout=30), bodies))
        ok = httpx.post(url + "/v1/completions", json=bodies[0], timeout=30)
    assert calls[0] == 2  # both requests were in the batch that failed
    for r in failed:
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "server_error"
        assert "RuntimeError: worker exploded" in error["message"]
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"]
    lines = audit_lines(tmp_path)
    assert sorted(line["status"] for line in lines) == [200, 500, 500]
    assert all("worker exploded" in line["error"]["message"] for line in lines if line["status"] == 500)


class _BrokenProbe(StatelessClassifier):
    """A classifier that loads fine but fails on every text: it raises, or scores NaN."""

    kind = "test-broken-probe"
    mode = "raise"

    def predict_proba(self, texts):
        if self.mode == "raise":
            raise RuntimeError("encoder weights missing (simulated)")
        return torch.full((len(texts),), float("nan")).numpy()


@pytest.mark.parametrize("mode, reason", [("raise", "RuntimeError: encoder weights missing"),
                                          ("nan", "non-finite score")])
def test_reload_refuses_a_guard_whose_classifier_fails_a_probe(model, tok, tmp_path, monkeypatch, mode, reason):
    monkeypatch.setattr(_BrokenProbe, "mode", mode)
    with CLASSIFIERS.override(_BrokenProbe.kind, _BrokenProbe):
        broken = tmp_path / "broken"
        Guard([Target("hp", _BrokenProbe(), CorruptionSpec("gaussian_first_n", 1.0))],
              model_fingerprint=make_guard(model).model_fingerprint).save(broken)
        config = ServeConfig(model_id="tiny", admin_token="s3cret")
        admin = {"authorization": "Bearer s3cret"}
        with ServerThread(create_app(LocalBackend(model, tok, make_guard(model), config))) as url:
            before = httpx.get(url + "/health").json()["guard"]
            r = httpx.post(url + "/v1/guard/reload", json={"path": str(broken)}, headers=admin)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_guard"
            assert "probe text" in r.json()["error"]["message"] and reason in r.json()["error"]["message"]
            assert httpx.get(url + "/health").json()["guard"] == before  # the old guard stays in force
            classified = httpx.post(url + "/v1/guard/classify", json={"input": FLAGGED}).json()
            assert classified["data"][0]["flagged"] and classified["guard"]["targets"] == ["hp"]


def _no_token_guard(model):
    """Flags Harry Potter prompts, but corrupts only 'Voldemort' tokens, with no fallback: a flagged prompt
    without that name gets no token selected."""
    return make_guard(model, tokens=TokenSelection("entities", ("Voldemort",), fallback=None))


def _all_tokens_guard(model):
    return Guard([Target("all", ConstantClassifier(1.0), CorruptionSpec("gaussian_first_n", 1.0),
                         tokens=TokenSelection("all"))], model_fingerprint=make_guard(model).model_fingerprint)


def test_flagged_prompt_with_no_token_selected_is_refused(model, tok, tmp_path, bare):
    """GuardedModel answers such a prompt uncorrupted (with a warning); the server fails closed: 503 under
    the refuse policy, with the reason in the audit log only."""
    with pytest.warns(UserWarning, match="picked no token"):
        assert GuardedModel(model, tok, _no_token_guard(model)).generate(FLAGGED, max_new_tokens=4) == \
            bare.generate(FLAGGED, max_new_tokens=4)  # the library's behaviour is unchanged
    with start(model, tok, _no_token_guard(model), tmp_path) as url:
        refused = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": [CLEAN, FLAGGED],
                                                             "max_tokens": 3})
        chat = httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": CHAT_FLAGGED,
                                                               "max_tokens": 3, "stream": True})
        named = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "Harry Potter and Voldemort",
                                                           "max_tokens": 3})
        clean = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": CLEAN, "max_tokens": 3})
    for r in (refused, chat):
        assert r.status_code == 503 and r.json()["error"]["code"] == "classifier_unavailable"
        assert "flagged" not in r.text and "token" not in r.text  # the client learns nothing about the scope
    assert named.status_code == 200 and clean.status_code == 200
    lines = audit_lines(tmp_path)
    assert [line["status"] for line in lines] == [503, 503, 200, 200]
    assert "selection_error" not in lines[0]["prompts"][0]
    assert "picked no token" in lines[0]["prompts"][1]["selection_error"]
    assert "picked no token" in lines[1]["prompts"][0]["selection_error"]
    assert lines[2]["flagged"] and lines[2]["corrupted_tokens"] > 0 and "selection_error" not in lines[2]["prompts"][0]


def test_flagged_prompt_with_no_token_selected_is_corrupted_whole_when_configured(model, tok, tmp_path, bare):
    with start(model, tok, _no_token_guard(model), tmp_path, on_classifier_error="corrupt") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        r = client.completions.create(model="tiny", prompt=[FLAGGED, CLEAN], max_tokens=6, temperature=0)
    expected = GuardedModel(model, tok, _all_tokens_guard(model)).generate(FLAGGED, max_new_tokens=6)[0]
    assert r.choices[0].text == expected != bare.generate(FLAGGED, max_new_tokens=6)[0]
    assert r.choices[1].text == bare.generate(CLEAN, max_new_tokens=6)[0]
    (line,) = audit_lines(tmp_path)
    flagged = line["prompts"][0]
    assert line["status"] == 200 and flagged["targets"] == ["hp", NO_TOKEN_TARGET]
    assert flagged["corrupted_tokens"] == len(tok(FLAGGED)["input_ids"])
    assert "picked no token" in flagged["selection_error"]
    assert line["prompts"][1]["corrupted_tokens"] == 0 and "selection_error" not in line["prompts"][1]
