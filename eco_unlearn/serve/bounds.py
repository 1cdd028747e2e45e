"""Bounds on the work one request may ask for, checked before the chat template is rendered.

The body limit bounds bytes, not work: a chat of 10,000 short messages fits in 400 KB. So before anything
expensive, a request's counts are checked (prompts, messages, characters of content), then its tokens:
each prompt's own content is tokenized in slices and the count stops as soon as it passes the limit, so
refusing an over-long prompt costs about as much as tokenizing the limit itself. The exact check against
the context, on the rendered prompt, follows in ``prepare_prompts``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..runtime.prompts import PromptInput
from .config import ServeConfig
from .errors import APIError

__all__ = ["check_counts", "check_tokens", "content_of", "count_tokens", "token_limit"]

TOKENIZE_SLICE = 64  # messages tokenized per call while counting a prompt's tokens


def content_of(prompt: PromptInput) -> list[str]:
    """The texts of a prompt that become tokens: the string itself, or each message's content."""
    if isinstance(prompt, str):
        return [prompt]
    return [m.get("content", "") if isinstance(m, dict) else "" for m in prompt]


def _where(param: str, index: int, total: int) -> str:
    return f"{param} {index}" if total > 1 else f"the {param}"


def check_counts(prompts: Sequence[PromptInput], config: ServeConfig, *, param: str) -> None:
    """400 if the request has more prompts, a chat more messages, or a prompt more characters than allowed."""
    if len(prompts) > config.max_prompts:
        raise APIError(400, f"at most {config.max_prompts} prompts per request, not {len(prompts)}", param=param,
                       code="too_many_prompts")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) and len(prompt) > config.max_messages:
            raise APIError(400, f"{_where(param, i, len(prompts))} has {len(prompt)} messages; this server takes at "
                           f"most {config.max_messages} (--max-messages)", param=param, code="too_many_messages")
        chars = sum(len(text) for text in content_of(prompt))
        if chars > config.max_prompt_chars:
            raise APIError(400, f"{_where(param, i, len(prompts))} has {chars} characters; this server takes at most "
                           f"{config.max_prompt_chars} (--max-prompt-chars)", param=param, code="prompt_too_long")


def count_tokens(texts: Sequence[str], tokenizer: Any, limit: int) -> int:
    """Tokens of ``texts`` (without special tokens), counted slice by slice; stops once past ``limit``.

    Texts with fewer UTF-8 bytes (plus one per text) than ``limit`` are not tokenized at all: every token of
    a byte-level or byte-fallback tokenizer covers at least one byte, but for a prefix a tokenizer may add.
    Then the bytes and text count are returned, a bound no lower than the tokens.
    """
    bound = sum(len(t.encode("utf-8")) + 1 for t in texts)
    if bound <= limit:
        return bound
    total = 0
    for start in range(0, len(texts), TOKENIZE_SLICE):
        piece = [t for t in texts[start : start + TOKENIZE_SLICE] if t]
        if piece:
            total += sum(len(ids) for ids in tokenizer(piece, add_special_tokens=False)["input_ids"])
        if total > limit:
            break
    return total


def check_tokens(prompts: Sequence[PromptInput], tokenizer: Any, limit: int | None, *, param: str,
                 why: str) -> None:
    """400 if a prompt's own content already has more than ``limit`` tokens (None: no limit), before it is
    rendered; ``why`` says where the limit comes from."""
    if limit is None:
        return
    for i, prompt in enumerate(prompts):
        n = count_tokens(content_of(prompt), tokenizer, limit)
        if n > limit:
            raise APIError(400, f"{_where(param, i, len(prompts))} has over {limit} tokens before its chat template "
                           f"is added, more than {why}", param=param, code="context_length_exceeded")


def token_limit(config: ServeConfig, context: int | None, truncation: str,
                max_tokens: int | None) -> tuple[int | None, str]:
    """The most tokens a prompt's content may have, and why: ``max_prompt_tokens``, or what the model's
    context leaves after ``max_tokens`` (at least one) when over-long prompts are refused, not truncated."""
    limit, why = config.max_prompt_tokens, f"the server's limit of {config.max_prompt_tokens} (--max-prompt-tokens)"
    if context is not None and truncation == "error" and (max_tokens or 1) < context:  # else prepare refuses it
        room = context - (max_tokens or 1)
        if limit is None or room < limit:
            limit, why = room, f"the model's context of {context} tokens leaves with max_tokens={max_tokens or 1}"
    return limit, why
