"""The vLLM gateway on the tiny model: the embedding-only model, the ``prompt_embeds`` encoding, and the
gateway end to end against PromptEmbedsCheckingServer, which decodes and checks requests as vLLM does."""

from __future__ import annotations

import base64
import io
import json

import httpx
import openai
import pytest
import torch

from eco_unlearn import CorruptionSpec, Guard, GuardedModel, ModelError, Target, TokenSelection, fingerprint
from eco_unlearn.classifier import ConstantClassifier
from eco_unlearn.serve import ServeConfig, create_app
from eco_unlearn.serve.embedding import load_embedding_only
from eco_unlearn.serve.gateway import VLLMGateway
from eco_unlearn.serve.server import ServerThread, free_port
from eco_unlearn.serve.vllm import encode_prompt_embeds
from unit_helpers import exploding_guard, make_guard
from vllm_checking_server import REPLY_PIECES, PromptEmbedsCheckingServer

FLAGGED = "Tell me about Harry Potter"
CLEAN = "The quick brown fox jumps over the lazy dog."
CHAT_FLAGGED = [{"role": "user", "content": "Who is Harry Potter?"}]
CHAT_CLEAN = [{"role": "user", "content": "What is the capital of France?"}]
REPLY = "".join(REPLY_PIECES)


def test_encode_prompt_embeds_is_torch_save_base64():
    batch = torch.randn(8, 50, 32)
    payload = encode_prompt_embeds(batch[3, 10:20])  # a view into a larger tensor
    raw = base64.b64decode(payload, validate=True)
    decoded = torch.load(io.BytesIO(raw), weights_only=True)
    assert torch.equal(decoded, batch[3, 10:20]) and decoded.dtype == torch.float32
    assert len(raw) < 10 * 32 * 4 + 2048  # the view alone was saved, not the whole batch's storage
    half = torch.load(io.BytesIO(base64.b64decode(encode_prompt_embeds(batch[0], torch.bfloat16))), weights_only=True)
    assert half.dtype == torch.bfloat16 and torch.equal(half, batch[0].bfloat16())
    with pytest.raises(ValueError):
        encode_prompt_embeds(batch)


@pytest.mark.parametrize("shard", [False, True], ids=["single-file", "sharded"])
def test_embedding_only_model_matches_the_full_model(model, tok, tmp_path, shard):
    model.save_pretrained(tmp_path, safe_serialization=True, **({"max_shard_size": "20KB"} if shard else {}))
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file() == shard
    embedder, tokenizer = load_embedding_only(tmp_path)
    assert fingerprint(embedder) == fingerprint(model)
    assert torch.equal(embedder.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert sum(p.numel() for p in embedder.parameters()) == model.get_input_embeddings().weight.numel()
    assert tokenizer("Harry Potter")["input_ids"] == tok("Harry Potter")["input_ids"]
    with pytest.raises(ModelError, match="only the embedding layer"):
        embedder(torch.tensor([[1, 2]]))


def test_embedding_only_model_bad_folder(tmp_path):
    with pytest.raises(ModelError, match="not a local Hugging Face model folder"):
        load_embedding_only(tmp_path)


@pytest.fixture
def saved(saved_model_dir):
    return load_embedding_only(saved_model_dir)


@pytest.fixture
def upstream(model):
    with PromptEmbedsCheckingServer(hidden_size=model.config.hidden_size, model="upstream-tiny") as server:
        yield server


def gateway_server(saved, model, upstream_url, tmp_path, upstream_model="upstream-tiny", **config):
    embedder, tokenizer = saved
    config = ServeConfig(model_id="tiny", audit_log=tmp_path / "audit.jsonl", **config)
    backend = VLLMGateway(embedder, tokenizer, make_guard(model), config, url=upstream_url, upstream_model=upstream_model)
    return ServerThread(create_app(backend))


def test_gateway_sends_corrupted_embeddings_for_flagged_and_text_for_the_rest(saved, model, tok, upstream, tmp_path):
    reference = GuardedModel(model, tok, make_guard(model))  # the full model, guarded in process
    with gateway_server(saved, model, upstream.url, tmp_path) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        r = client.completions.create(model="tiny", prompt=FLAGGED, max_tokens=16, temperature=0, seed=3, stop=["\n"])
        assert r.choices[0].text == REPLY and r.choices[0].finish_reason == "stop"
        assert r.usage.completion_tokens == len(REPLY_PIECES)
        client.completions.create(model="tiny", prompt=CLEAN, max_tokens=16, temperature=0)
        c = client.chat.completions.create(model="tiny", messages=CHAT_FLAGGED, max_tokens=3, temperature=0.5, top_p=0.9)
        assert c.choices[0].message.content == "".join(REPLY_PIECES[:3]) and c.choices[0].finish_reason == "length"
        client.chat.completions.create(model="tiny", messages=CHAT_CLEAN, max_tokens=3)
    flagged, clean, chat_flagged, chat_clean = upstream.requests
    expected = reference.prefill_inputs(FLAGGED).inputs_embeds[0]
    assert flagged["kind"] == "embeds" and flagged["tensor"].dtype == torch.float32
    assert torch.equal(flagged["tensor"], expected)
    assert not torch.equal(expected, reference.model.get_input_embeddings()(torch.tensor(tok(FLAGGED)["input_ids"])))
    assert flagged["body"] == {"model": "upstream-tiny", "max_tokens": 16, "temperature": 0.0, "top_p": 1.0,
                               "stop": ["\n"], "seed": 3, "stream": True, "stream_options": {"include_usage": True}}
    assert clean == {**clean, "kind": "text", "prompt": CLEAN, "add_special_tokens": True}
    assert torch.equal(chat_flagged["tensor"], reference.prefill_inputs([CHAT_FLAGGED]).inputs_embeds[0])
    assert chat_flagged["body"]["temperature"] == 0.5 and chat_flagged["body"]["top_p"] == 0.9
    rendered = tok.apply_chat_template(CHAT_CLEAN, tokenize=False, add_generation_prompt=True)
    assert chat_clean["kind"] == "text" and chat_clean["prompt"] == rendered and chat_clean["add_special_tokens"] is False
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [a["flagged"] for a in audit] == [True, False, True, False] and all(a["backend"] == "vllm" for a in audit)
    assert audit[0]["corrupted_tokens"] == 4 and audit[0]["prompts"][0]["prompt_tokens"] == expected.shape[0]


def test_gateway_renders_and_tokenizes_each_prompt_once(saved, model, upstream, tmp_path, encodings):
    with gateway_server(saved, model, upstream.url, tmp_path) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        rendered = saved[1].apply_chat_template(CHAT_FLAGGED, tokenize=False, add_generation_prompt=True)
        for send, prompts, texts in [
            (lambda: client.chat.completions.create(model="tiny", messages=CHAT_FLAGGED, max_tokens=3),
             [CHAT_FLAGGED], [rendered]),
            (lambda: client.completions.create(model="tiny", prompt=[FLAGGED, CLEAN], max_tokens=3),
             [FLAGGED, CLEAN], [FLAGGED, CLEAN]),
        ]:
            encodings["rendered"].clear()
            encodings["tokenized"].clear()
            send()
            assert encodings == {"rendered": prompts, "tokenized": texts}
    assert [r["kind"] for r in upstream.requests][0] == "embeds"


def test_gateway_streams_chat_and_completions(saved, model, upstream, tmp_path):
    with gateway_server(saved, model, upstream.url, tmp_path) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(model="tiny", messages=CHAT_FLAGGED, max_tokens=16, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY
        assert chunks[-1].choices[0].finish_reason == "stop"
        pieces = list(client.completions.create(model="tiny", prompt=[CLEAN, FLAGGED], max_tokens=2, stream=True))
        by_index = {0: "", 1: ""}
        for p in pieces:
            by_index[p.choices[0].index] += p.choices[0].text
        assert by_index == {0: "".join(REPLY_PIECES[:2]), 1: "".join(REPLY_PIECES[:2])}
    kinds = [r["kind"] for r in upstream.requests]
    # the chat first; the two prompts of the completions request go upstream concurrently, in either order
    assert kinds[0] == "embeds" and sorted(kinds[1:]) == ["embeds", "text"]


def assert_failed_closed(response, policy, upstream, model, tok, flagged):
    """``refuse``: a 503 and nothing sent upstream. ``corrupt``: ``flagged`` reached vLLM as embeddings with
    every token corrupted, its clean batch-mate as text."""
    if policy == "refuse":
        assert response.status_code == 503 and response.json()["error"]["code"] == "classifier_unavailable"
        assert not upstream.requests
        return
    assert response.status_code == 200
    everything = Guard([Target("all", ConstantClassifier(1.0), CorruptionSpec("gaussian_first_n", 1.0),
                               tokens=TokenSelection("all"))], model_fingerprint=fingerprint(model))
    (embeds,) = [q for q in upstream.requests if q["kind"] == "embeds"]
    (text,) = [q for q in upstream.requests if q["kind"] == "text"]
    assert torch.equal(embeds["tensor"], GuardedModel(model, tok, everything).prefill_inputs(flagged).inputs_embeds[0])
    assert text["prompt"] == CLEAN


@pytest.mark.parametrize("policy", ["refuse", "corrupt"])
def test_gateway_fails_closed(exploding_kind, saved, model, tok, upstream, tmp_path, policy):
    """A prompt the classifier cannot judge never reaches vLLM as plain text: refused (nothing sent) or
    sent with every token corrupted; its clean batch-mate goes as text."""
    embedder, tokenizer = saved
    config = ServeConfig(model_id="tiny", audit_log=tmp_path / "audit.jsonl", on_classifier_error=policy)
    backend = VLLMGateway(embedder, tokenizer, exploding_guard(model), config, url=upstream.url, upstream_model="upstream-tiny")
    prompt = "EXPLODE this prompt"
    with ServerThread(create_app(backend)) as url:
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": [prompt, CLEAN], "max_tokens": 2})
    assert_failed_closed(r, policy, upstream, model, tok, prompt)


def test_gateway_classify_needs_no_upstream(saved, model, tmp_path):
    with gateway_server(saved, model, f"http://127.0.0.1:{free_port()}", tmp_path) as url:
        r = httpx.post(url + "/v1/guard/classify", json={"input": [FLAGGED, CLEAN]}).json()
        assert [d["flagged"] for d in r["data"]] == [True, False]


def test_gateway_upstream_errors(saved, model, upstream, tmp_path):
    with gateway_server(saved, model, upstream.url, tmp_path, upstream_model="not-served") as url:
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": FLAGGED, "max_tokens": 2})
        assert r.status_code == 400 and "does not exist" in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "upstream_rejected"
    with gateway_server(saved, model, f"http://127.0.0.1:{free_port()}", tmp_path) as url:
        r = httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": CHAT_CLEAN, "max_tokens": 2})
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
        r = httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": CHAT_CLEAN, "max_tokens": 2,
                                                            "stream": True})
        assert r.status_code == 200 and '"code": "upstream_unreachable"' in r.text and r.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("policy", ["refuse", "corrupt"])
def test_gateway_fails_closed_on_a_flagged_prompt_with_no_token_selected(saved, model, tok, upstream, tmp_path, policy):
    """A flagged prompt whose token selection picks nothing never reaches vLLM as plain text: refused, or
    sent with every user token corrupted."""
    embedder, tokenizer = saved
    guard = make_guard(model, tokens=TokenSelection("entities", ("Voldemort",), fallback=None))
    config = ServeConfig(model_id="tiny", audit_log=tmp_path / "audit.jsonl", on_classifier_error=policy)
    backend = VLLMGateway(embedder, tokenizer, guard, config, url=upstream.url, upstream_model="upstream-tiny")
    with ServerThread(create_app(backend)) as url:
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": [FLAGGED, CLEAN], "max_tokens": 2})
    (line,) = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert "picked no token" in line["prompts"][0]["selection_error"]
    assert_failed_closed(r, policy, upstream, model, tok, FLAGGED)
    if policy == "corrupt":
        assert line["prompts"][0]["corrupted_tokens"] == len(tok(FLAGGED)["input_ids"])
