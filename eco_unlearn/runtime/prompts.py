"""Turn user input (a string or chat messages) into the exact text the model sees.

The classifier must judge what the *user* wrote, not the chat template around it, and token selection
must only ever pick the user's tokens. So rendering keeps the character spans of the user's text inside
the rendered prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

from ..errors import PromptError

__all__ = ["Message", "PromptInput", "RenderedPrompt", "render_prompt", "render_prompts"]

Message = dict[str, str]
PromptInput = Union[str, Sequence[Message]]


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt ready to tokenize, with where the user's own text sits inside it."""

    text: str
    user_text: str
    user_spans: tuple[tuple[int, int], ...]
    templated: bool

    @property
    def add_special_tokens(self) -> bool:
        # A chat template writes its own BOS/special tokens; a raw prompt gets the tokenizer's defaults.
        return not self.templated


def _check_messages(messages: Sequence[Any], index: int) -> list[Message]:
    if not messages:
        raise PromptError(f"prompt {index} is an empty list of messages; give at least one user message")
    checked = []
    for j, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise PromptError(f"prompt {index}, message {j}: expected a dict with 'role' and 'content' strings")
        if not isinstance(message.get("content"), str):
            raise PromptError(f"prompt {index}, message {j}: 'content' must be a string")
        checked.append({"role": message["role"], "content": message["content"]})
    if not any(m["role"] == "user" and m["content"].strip() for m in checked):
        raise PromptError(f"prompt {index} has no non-empty user message")
    return checked


PREFIX_RENDER_LIMIT = 32  # the most messages located by rendering every prefix (quadratic) when markers fail
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # private-use characters: no template alters or adds them


def _marked_spans(text: str, messages: list[Message], tokenizer: Any) -> list[tuple[int, int] | None] | None:
    """Spans of each message's content in ``text``, from one more rendering with each content replaced by a
    unique marker: linear in the conversation's length.

    The text between the markers is the template's own; the spans are trusted only if that text with the
    contents put back (as given, or trimmed, as some templates do) is exactly ``text``. None otherwise.
    """
    if any(_MARK_OPEN in m["content"] for m in messages):
        return None
    marks = [f"{_MARK_OPEN}{j}{_MARK_CLOSE}" for j in range(len(messages))]
    try:
        marked = tokenizer.apply_chat_template([{**m, "content": mark} for m, mark in zip(messages, marks)],
                                               tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that branches on the content
        return None
    if marked.count(_MARK_OPEN) != len(messages):
        return None  # a message dropped or repeated by the template
    pieces, pos = [], 0
    for mark in marks:
        found = marked.find(mark, pos)
        if found < 0:
            return None
        pieces.append(marked[pos:found])
        pos = found + len(mark)
    tail = marked[pos:]
    for clean in (lambda c: c, str.strip):
        spans, parts, length = [], [], 0
        for piece, message in zip(pieces, messages):
            content = clean(message["content"])
            length += len(piece)
            spans.append((length, length + len(content)))
            length += len(content)
            parts += [piece, content]
        if "".join(parts) + tail == text:
            return spans
    return None


def _turn_ends(text: str, messages: list[Message], tokenizer: Any) -> list[int] | None:
    """End offset of each message's turn in ``text``, from renderings of the conversation's prefixes.

    None when the template does not render prefixes as prefixes of the whole (then turns are unknown), and
    for conversations over ``PREFIX_RENDER_LIMIT`` messages (rendering every prefix is quadratic).
    """
    if len(messages) > PREFIX_RENDER_LIMIT:
        return None
    ends = []
    for j in range(1, len(messages) + 1):
        try:
            prefix = tokenizer.apply_chat_template(messages[:j], tokenize=False, add_generation_prompt=False)
        except Exception:  # some templates reject partial conversations
            return None
        if not text.startswith(prefix):
            return None
        ends.append(len(prefix))
    return ends


def _content_spans(text: str, messages: list[Message], ends: list[int] | None) -> list[tuple[int, int] | None]:
    """Character span of each message's content inside the rendered ``text`` (None where not found).

    With known turn ends, each content is searched inside its own turn; otherwise messages are located
    from the last to the first, each before the next one's start. Searching backwards finds the content
    itself rather than an earlier look-alike (a system message, an earlier turn, the role header).
    """
    spans: list[tuple[int, int] | None] = [None] * len(messages)
    bound = len(text)
    for j in reversed(range(len(messages))):
        low, high = (ends[j - 1] if j else 0, ends[j]) if ends is not None else (0, bound)
        for content in dict.fromkeys((messages[j]["content"], messages[j]["content"].strip())):
            start = text.rfind(content, low, high) if content else -1
            if start >= 0:
                spans[j] = (start, start + len(content))
                bound = start
                break
    return spans


def render_prompt(prompt: PromptInput, tokenizer: Any, *, chat: bool = False, index: int = 0) -> RenderedPrompt:
    """Render one prompt. Strings are used as-is unless ``chat`` wraps them in a user message."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PromptError(f"prompt {index} is empty; give some text to complete")
        if not chat:
            return RenderedPrompt(prompt, prompt, ((0, len(prompt)),), templated=False)
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence):
        messages = _check_messages(prompt, index)
    else:
        raise PromptError(f"prompt {index} must be a string or a list of chat messages, not {type(prompt).__name__}")
    if not getattr(tokenizer, "chat_template", None):
        raise PromptError(
            "this tokenizer has no chat template; pass plain strings with chat=False (or --no-chat)"
        )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    located = _marked_spans(text, messages, tokenizer)
    if located is None:
        located = _content_spans(text, messages, _turn_ends(text, messages, tokenizer))
    spans = []
    for j, (message, span) in enumerate(zip(messages, located)):
        if message["role"] != "user" or not message["content"]:
            continue
        if span is None:
            raise PromptError(f"prompt {index}: cannot locate user message {j} in the rendered chat template")
        spans.append(span)
    user_text = "\n".join(text[a:b] for a, b in spans)
    return RenderedPrompt(text, user_text, tuple(spans), templated=True)


def render_prompts(
    prompts: PromptInput | Sequence[PromptInput], tokenizer: Any, *, chat: bool = False
) -> list[RenderedPrompt]:
    """Render a single prompt or a batch of prompts (strings or message lists)."""
    if isinstance(prompts, str) or (
        isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], dict)
    ):
        prompts = [prompts]  # one prompt, not a batch
    if not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise PromptError("no prompts given; pass a string, a list of strings or a list of chat conversations")
    return [render_prompt(p, tokenizer, chat=chat, index=i) for i, p in enumerate(prompts)]
