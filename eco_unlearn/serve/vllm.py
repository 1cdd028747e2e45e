"""Requests to a vLLM server's ``/v1/completions``, as vLLM documents them (Prompt Embedding Inputs).

A flagged prompt goes as ``prompt_embeds``: the base64 text of ``torch.save(tensor)``, one 2-D tensor of
shape ``(sequence_length, hidden_size)`` per prompt, floating point (vLLM casts it to the model's dtype);
the server needs ``vllm serve MODEL --enable-prompt-embeds``. vLLM applies no chat template to
``prompt_embeds``, so the embeddings are of the whole rendered prompt, template included. Any other
prompt goes as plain text ``prompt``, with ``add_special_tokens`` false when the chat template already wrote
them.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import torch

from ..errors import PromptError
from .generation import GenerationParams

__all__ = ["completion_body", "encode_prompt_embeds"]


def encode_prompt_embeds(embeds: torch.Tensor, dtype: torch.dtype | None = None) -> str:
    """Base64 of ``torch.save`` of a ``[sequence_length, hidden_size]`` tensor, as vLLM's ``prompt_embeds``.

    The tensor is copied first: saving a view would also save the rest of its storage (a whole batch).
    """
    if embeds.dim() != 2:
        raise PromptError(f"prompt embeddings must be 2-D (sequence_length, hidden_size), not {tuple(embeds.shape)}")
    tensor = embeds.detach().to("cpu", dtype or embeds.dtype).clone().contiguous()
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def completion_body(
    model: str,
    params: GenerationParams,
    max_tokens: int,
    *,
    text: str | None = None,
    add_special_tokens: bool = True,
    prompt_embeds: str | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """The JSON body of one vLLM ``/v1/completions`` request: ``prompt_embeds`` or plain ``prompt``."""
    if (text is None) == (prompt_embeds is None):
        raise PromptError("give either the prompt text or its embeddings")
    body: dict[str, Any] = {"model": model}
    if prompt_embeds is not None:
        body["prompt_embeds"] = prompt_embeds
    else:
        body["prompt"] = text
        body["add_special_tokens"] = add_special_tokens
    body.update(max_tokens=max_tokens, temperature=params.temperature, top_p=params.top_p)
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body
