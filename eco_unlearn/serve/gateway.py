"""The vLLM gateway backend: the same API, with the guard in front of a vLLM server.

Prompts are rendered and classified here, exactly as the local backend does. A prompt with corrupted
tokens goes to vLLM's ``/v1/completions`` as ``prompt_embeds`` (its corrupted embeddings, computed from the
embedding layer alone: see ``embedding.py``); every other prompt goes as plain text. vLLM does the
generation (and its own batching); the gateway relays its stream back, as text or as chat chunks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Sequence

import httpx
import torch

from ..runtime.guard import Guard
from ..runtime.guarded import GuardedModel
from ..runtime.prompts import PromptInput
from .backends import ClassifierRefused, prepare_prompts
from .config import ServeConfig
from .errors import APIError
from .failclosed import Classified, classify, plan_failing_closed
from .generation import ChoiceResult, GenerationHandle, GenerationParams, Prepared
from .reload import GuardHolder, GuardSnapshot
from .vllm import completion_body, encode_prompt_embeds

__all__ = ["VLLMGateway"]

log = logging.getLogger("eco_unlearn.serve")


class VLLMGateway:
    """Relay generation to the vLLM server at ``url`` (which serves ``upstream_model``), guarding each prompt.

    ``model`` needs only its config and input embeddings (an ``EmbeddingOnlyModel``); ``payload_dtype`` is
    the dtype of the embeddings sent (default: the embedding layer's).
    """

    kind = "vllm"
    truncation = "error"  # over-long prompts are refused, never truncated

    def __init__(self, model: Any, tokenizer: Any, guard: Guard | None, config: ServeConfig, *, url: str,
                 upstream_model: str | None = None, force: bool = False, payload_dtype: torch.dtype | None = None,
                 timeout: float = 600.0) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.url = url.rstrip("/")
        self.upstream_model = upstream_model or config.model_id
        self.payload_dtype, self.timeout = payload_dtype, timeout
        self.guards = GuardHolder(model, guard, config.guard_path, force=force)
        # Unguarded and never changed: each request is planned with its snapshot's decisions and seed, so
        # concurrent requests share it safely.
        self._guarded = GuardedModel(model, tokenizer)
        self.context = self._guarded.max_length
        self.client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task] = set()
        tokenizer("warm up")  # settle the tokenizer's padding/truncation state before threads share it

    def prepare(self, prompts: Sequence[PromptInput], max_tokens: int | None, *,
                param: str = "prompt") -> list[Prepared]:
        return prepare_prompts(self._guarded, prompts, max_tokens,
                               default_max_tokens=self.config.default_max_tokens, param=param)

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=10.0))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.client is not None:
            await self.client.aclose()

    async def submit(self, prepared: list[Prepared], params: GenerationParams,
                     snapshot: GuardSnapshot, *, owner: str | None = None) -> GenerationHandle:
        """Relay the request (``owner`` is unused: vLLM schedules its own batches)."""
        handle = GenerationHandle(asyncio.get_running_loop())
        task = asyncio.get_running_loop().create_task(self._forward(handle, prepared, params, snapshot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return handle

    # ----------------------------------------------------------------------------------------------
    def encode(self, prepared: list[Prepared], snapshot: GuardSnapshot) -> tuple[Classified, list[dict[str, Any]]]:
        """Classify the prompts, plan them from the tokens ``prepare`` made, and build each one's prompt part:
        corrupted ``prompt_embeds`` or plain text.

        The classification's decisions come back with their corrupted-token counts filled in; no parts when
        a prompt fails closed (its classifier failed, or it is flagged with no token selected) under the
        ``refuse`` policy.
        """
        classified = classify(snapshot.guard, [p.user_text for p in prepared])
        plan, classified = plan_failing_closed(self._guarded, snapshot.guard, [p.encoded for p in prepared],
                                               [0] * len(prepared), classified)
        if classified.fails_closed and self.config.on_classifier_error == "refuse":
            return classified, []
        batch = self._guarded.prefill_inputs(plan)
        parts = []
        for b, (p, decision) in enumerate(zip(prepared, batch.decisions)):
            if batch.inputs_embeds is not None and decision.corrupted_tokens > 0:
                embeds = batch.inputs_embeds[b][batch.attention_mask[b].bool()]
                parts.append({"prompt_embeds": encode_prompt_embeds(embeds, self.payload_dtype)})
            else:
                parts.append({"text": p.text, "add_special_tokens": p.add_special_tokens})
        return classified, parts

    async def _forward(self, handle: GenerationHandle, prepared: list[Prepared], params: GenerationParams,
                       snapshot: GuardSnapshot) -> None:
        try:
            classified, parts = await asyncio.to_thread(self.encode, prepared, snapshot)
            if not parts:
                handle.fail(ClassifierRefused(classified.failures()))
                return
            handle.set_decided(classified.decisions, classified.failures())
            results = await asyncio.gather(*(
                self._relay(handle, i, p, part, params, decision)
                for i, (p, part, decision) in enumerate(zip(prepared, parts, classified.decisions))
            ))
            handle.finish(list(results))
        except APIError as exc:
            handle.fail(exc)
        except httpx.HTTPError as exc:
            handle.fail(APIError(502, f"cannot reach the vLLM server at {self.url}: {type(exc).__name__}: {exc}",
                                 code="upstream_unreachable"))
        except asyncio.CancelledError:
            handle.fail(APIError(503, "the server is shutting down", code="shutting_down"))
            raise
        except Exception as exc:
            log.exception("the gateway failed")
            handle.fail(APIError(500, f"gateway error ({type(exc).__name__}: {exc})", type="server_error"))

    async def _relay(self, handle: GenerationHandle, index: int, prepared: Prepared, part: dict[str, Any],
                     params: GenerationParams, decision: Any) -> ChoiceResult:
        body = completion_body(self.upstream_model, params, prepared.max_tokens, stream=True, **part)
        pieces: list[str] = []
        finish, usage = None, {}
        assert self.client is not None, "the gateway is not started"
        async with self.client.stream("POST", f"{self.url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise _upstream_error(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if handle.cancelled:
                    break  # closing the stream makes vLLM abort the request
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk or chunk.get("object") == "error":
                    raise _upstream_error(502, data.encode())
                for choice in chunk.get("choices") or []:
                    text = choice.get("text") or ""
                    pieces.append(text)
                    handle.emit(index, text)
                    finish = choice.get("finish_reason") or finish
                usage = chunk.get("usage") or usage
        text = "".join(pieces)
        completion_tokens = usage.get("completion_tokens")
        if completion_tokens is None:
            completion_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return ChoiceResult(index, text, finish or "stop", usage.get("prompt_tokens", prepared.prompt_tokens),
                            completion_tokens, decision)


def _upstream_error(status: int, raw: bytes) -> APIError:
    """An upstream failure as our error: a 4xx stays a 400 (the request was at fault), the rest is 502."""
    try:
        data = json.loads(raw)
        message = str(data["error"]["message"] if isinstance(data.get("error"), dict) else data["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        message = raw.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    if 400 <= status < 500:
        return APIError(400, f"the vLLM server refused the request: {message}", code="upstream_rejected")
    return APIError(502, f"the vLLM server failed: {message}", code="upstream_error")
