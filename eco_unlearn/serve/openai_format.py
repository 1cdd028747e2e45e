"""OpenAI response and stream-chunk bodies for completions and chat completions."""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

from .generation import ChoiceResult

__all__ = ["chat_chunk", "chat_response", "completion_chunk", "completion_response", "sse", "usage", "usage_chunk"]


def usage(results: Sequence[ChoiceResult]) -> dict[str, int]:
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def completion_response(rid: str, model: str, results: Sequence[ChoiceResult]) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": r.index, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
                    for r in results],
        "usage": usage(results),
    }


def chat_response(rid: str, model: str, results: Sequence[ChoiceResult]) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": r.index, "message": {"role": "assistant", "content": r.text}, "finish_reason": r.finish_reason,
             "logprobs": None}
            for r in results
        ],
        "usage": usage(results),
    }


def completion_chunk(rid: str, model: str, created: int, index: int, text: str,
                     finish: str | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": None}],
    }


def chat_chunk(rid: str, model: str, created: int, index: int, delta: dict[str, Any],
               finish: str | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def usage_chunk(rid: str, model: str, created: int, obj: str, results: Sequence[ChoiceResult]) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": usage(results)}
