"""Request bodies of the OpenAI-compatible API, validated strictly (a string is not a number).

Unknown fields are ignored, as most OpenAI-compatible servers do; fields whose non-default values this
server cannot honour (``n`` > 1, ``logprobs``, ``echo``, penalties, tools, ...) are refused with a 400
naming them, rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, field_validator

__all__ = ["ChatMessage", "ChatRequest", "ClassifyRequest", "CompletionRequest", "ReloadRequest", "SamplingFields"]


def _unicode(value: str) -> str:
    """Refuse a string UTF-8 cannot encode: JSON allows unpaired surrogate escapes, tokenizers do not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (an unpaired surrogate escape such as \\ud800)") from None
    return value


Text = Annotated[str, Strict(), AfterValidator(_unicode)]  # a string that tokenizers and UTF-8 accept
Number = Annotated[float, Strict()]
Stop = Union[Text, list[Text], None]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _unsupported(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported by this server")
    return value


class SamplingFields(_Body):
    """Generation parameters shared by completions and chat completions."""

    model: Text
    temperature: Number = Field(1.0, ge=0.0, le=2.0)
    top_p: Number = Field(1.0, gt=0.0, le=1.0)
    n: StrictInt = 1
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    stop: Stop = Field(None, validate_default=True)
    seed: StrictInt | None = Field(None, ge=-(2**63), lt=2**63)  # 64-bit, as torch and vLLM take it
    presence_penalty: Number = 0.0
    frequency_penalty: Number = 0.0
    logit_bias: dict[str, Any] | None = None
    user: Text | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported; send several requests for several samples")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: Stop) -> list[str]:
        stops = [] if value is None else [value] if isinstance(value, str) else list(value)
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop sequences, not {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float, info: Any) -> float:
        return _unsupported(info.field_name, value, (0, 0.0))

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, value: dict | None) -> dict | None:
        if value:
            raise ValueError("logit_bias is not supported by this server")
        return value

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(SamplingFields):
    prompt: Union[Text, list[Text]]
    max_tokens: StrictInt | None = Field(None, ge=1)
    echo: StrictBool = False
    logprobs: StrictInt | None = None
    best_of: StrictInt | None = None
    suffix: Text | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value: str | list[str]) -> list[str]:
        prompts = [value] if isinstance(value, str) else list(value)
        if not prompts:
            raise ValueError("give at least one prompt")
        for i, prompt in enumerate(prompts):
            if not prompt.strip():
                raise ValueError("the prompt is empty" if len(prompts) == 1 else f"prompt {i} is empty")
        return prompts

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        return _unsupported("echo", value, (False,))

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        return _unsupported("logprobs", value, (None,))

    @field_validator("best_of")
    @classmethod
    def _no_best_of(cls, value: int | None) -> int | None:
        return _unsupported("best_of", value, (None, 1))

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        return _unsupported("suffix", value, (None, ""))


class TextPart(_Body):
    type: Literal["text"]
    text: Text


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[Text, list[TextPart]]
    name: Text | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def as_dict(self) -> dict[str, str]:
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    logprobs: StrictBool | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _has_user_text(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in value):
            raise ValueError("the conversation needs at least one non-empty user message")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        return _unsupported("logprobs", value, (None, False))

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list | None) -> list | None:
        if value:
            raise ValueError("tools are not supported by this server")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict | None) -> dict | None:
        if value and value.get("type") != "text":
            raise ValueError(f"response_format type {value.get('type')!r} is not supported; only 'text'")
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class ClassifyRequest(_Body):
    input: Union[Text, list[Text]]
    model: Text | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> list[str]:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts or any(not t.strip() for t in texts):
            raise ValueError("give one or more non-empty texts")
        return texts


class ReloadRequest(_Body):
    path: Text | None = None
