"""Tests of eco_unlearn.runtime.prompts (rendering, user spans) and eco_unlearn.runtime.tokens (which tokens get corrupted)."""

from __future__ import annotations

import copy

import pytest

from eco_unlearn.errors import GuardError, PromptError
from eco_unlearn.runtime.prompts import RenderedPrompt, render_prompt, render_prompts
from eco_unlearn.runtime.tokens import TokenSelection, user_token_indices


def tokenize(tok, rendered: RenderedPrompt):
    """ids, offsets and special flags exactly as GuardedModel computes them."""
    enc = tok(rendered.text, add_special_tokens=rendered.add_special_tokens, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    special = [i in set(tok.all_special_ids) for i in ids]
    return ids, offsets, special


def token_texts(rendered, offsets, indices):
    return [rendered.text[offsets[i][0] : offsets[i][1]].strip() for i in indices]


# ------------------------------------------------------------------------------------ render_prompt


def test_plain_string_span_covers_whole_string(tok):
    """A plain string is used as-is; its single user span is the whole string."""
    r = render_prompt("Tell me about Paris", tok)
    assert r.text == r.user_text == "Tell me about Paris"
    assert r.user_spans == ((0, 19),)
    assert r.templated is False and r.add_special_tokens is True


def test_chat_string_is_wrapped_in_template(tok):
    """chat=True wraps a string in a user message of the chat template."""
    r = render_prompt("Tell me about Paris", tok, chat=True)
    assert r.text == "<|im_start|>user\nTell me about Paris<|im_end|>\n<|im_start|>assistant\n"
    assert r.user_text == "Tell me about Paris"
    (a, b), = r.user_spans
    assert r.text[a:b] == "Tell me about Paris"
    assert r.templated is True and r.add_special_tokens is False


def test_chat_messages_spans_point_at_user_content(tok):
    """Spans locate each user message inside the rendered text; the system text is not user text."""
    messages = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Who is Harry Potter?"},
        {"role": "assistant", "content": "A wizard."},
        {"role": "user", "content": "Where is Paris?"},
    ]
    r = render_prompt(messages, tok)
    assert r.text == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert [r.text[a:b] for a, b in r.user_spans] == ["Who is Harry Potter?", "Where is Paris?"]
    assert r.user_text == "Who is Harry Potter?\nWhere is Paris?"
    assert "terse" not in r.user_text and "wizard" not in r.user_text
    # each span sits right after its "<|im_start|>user\n" header
    for a, _ in r.user_spans:
        assert r.text[:a].endswith("<|im_start|>user\n")


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Only answer about Hogwarts."}, {"role": "user", "content": "Hogwarts"}],
        [{"role": "user", "content": "user"}],
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Ask me about Paris"},
            {"role": "user", "content": "Paris"},
        ],
    ],
    ids=["text-in-system-message", "text-equals-role-name", "text-in-assistant-turn"],
)
def test_user_span_is_inside_the_user_turn(tok, messages):
    """The span of the last user message must start right after its own '<|im_start|>user\\n' header."""
    r = render_prompt(messages, tok)
    last_header = r.text.rindex("<|im_start|>user\n") + len("<|im_start|>user\n")
    assert r.user_spans[-1][0] == last_header


def test_template_that_strips_content_falls_back_to_stripped_text(tok):
    """If the template trims the content, the span covers the trimmed user text."""
    trimming = copy.deepcopy(tok)
    trimming.chat_template = tok.chat_template.replace("message['content']", "(message['content'] | trim)")
    r = render_prompt([{"role": "user", "content": "  Who is Harry?  "}], trimming)
    (a, b), = r.user_spans
    assert r.text[a:b] == "Who is Harry?"
    assert r.user_text == "Who is Harry?"


@pytest.mark.parametrize(
    "prompt,match",
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ([], "empty list"),
        ([{"role": "system", "content": "Be nice."}], "no non-empty user message"),
        ([{"role": "user", "content": "   "}], "no non-empty user message"),
        (["hello"], "expected a dict"),
        ([{"content": "hello"}], "expected a dict"),
        ([{"role": "user", "content": 3}], "'content' must be a string"),
        (42, "must be a string or a list"),
    ],
)
def test_render_prompt_rejects_bad_input(tok, prompt, match):
    """Empty, whitespace-only, user-less or malformed prompts raise PromptError."""
    with pytest.raises(PromptError, match=match):
        render_prompt(prompt, tok)


def test_chat_without_template_rejected(tok):
    """chat=True on a tokenizer without chat template raises PromptError."""
    no_template = copy.deepcopy(tok)
    no_template.chat_template = None
    with pytest.raises(PromptError, match="no chat template"):
        render_prompt("hello", no_template, chat=True)
    # plain strings still work
    assert render_prompt("hello", no_template).text == "hello"


def test_render_prompts_single_and_batch(tok):
    """A string or one conversation is a batch of one; lists of them are batches; [] is an error."""
    conversation = [{"role": "user", "content": "Hi"}]
    assert len(render_prompts("Hi", tok)) == 1
    assert len(render_prompts(conversation, tok)) == 1
    assert [r.user_text for r in render_prompts(["a b", "c d"], tok)] == ["a b", "c d"]
    assert len(render_prompts([conversation, conversation], tok)) == 2
    with pytest.raises(PromptError, match="no prompts"):
        render_prompts([], tok)
    with pytest.raises(PromptError, match="prompt 1"):
        render_prompts(["ok", ""], tok)


# ------------------------------------------------------------------------------------ TokenSelection

CHAT = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "Tell me about Harry Potter"},
    {"role": "assistant", "content": "He is a wizard."},
    {"role": "user", "content": "And Hogwarts?"},
]


def test_all_but_last_on_plain_string(tok):
    """all_but_last selects every token except the last one of a plain prompt."""
    r = render_prompt("Tell me about Harry Potter", tok)
    ids, offsets, special = tokenize(tok, r)
    assert len(ids) == 5
    assert TokenSelection().select(r, offsets, special) == [0, 1, 2, 3]
    assert TokenSelection("all").select(r, offsets, special) == [0, 1, 2, 3, 4]


def test_chat_selection_only_user_tokens(tok):
    """In a chat prompt, 'all' picks exactly the user-content tokens: never special or template tokens."""
    r = render_prompt(CHAT, tok)
    ids, offsets, special = tokenize(tok, r)
    chosen = TokenSelection("all").select(r, offsets, special)
    assert chosen
    for i in chosen:
        assert not special[i]
        assert ids[i] not in tok.all_special_ids
        a, b = offsets[i]
        assert any(s <= a and b <= e for s, e in r.user_spans), (i, r.text[a:b])
    assert "".join(r.text[offsets[i][0] : offsets[i][1]] for i in chosen) == "Tell me about Harry PotterAnd Hogwarts?"
    # every user token is chosen: none of the unchosen tokens lies inside a user span
    for i in set(range(len(ids))) - set(chosen):
        a, b = offsets[i]
        assert not any(s <= a < b <= e for s, e in r.user_spans)


def test_chat_all_but_last_drops_only_final_user_token(tok):
    """all_but_last = all user tokens minus the last user token ('?')."""
    r = render_prompt(CHAT, tok)
    ids, offsets, special = tokenize(tok, r)
    everything = TokenSelection("all").select(r, offsets, special)
    assert TokenSelection("all_but_last").select(r, offsets, special) == everything[:-1]
    assert r.text[offsets[everything[-1]][0] : offsets[everything[-1]][1]] == "?"


def test_user_token_indices_skips_special_even_inside_span(tok):
    """A token flagged special is never a candidate, even if its offsets overlap the user span."""
    r = render_prompt("Paris is the capital of France", tok)
    ids, offsets, special = tokenize(tok, r)
    special = list(special)
    special[2] = True
    assert 2 not in user_token_indices(r, offsets, special)
    assert user_token_indices(r, offsets, [False] * len(ids)) == list(range(len(ids)))


@pytest.mark.parametrize("entity", ["harry potter", "HARRY POTTER", "Harry Potter", "  harry potter "])
def test_entities_match_case_insensitively(tok, entity):
    """Entities match ignoring case and surrounding whitespace; exactly the overlapping tokens are chosen."""
    r = render_prompt(CHAT, tok)
    ids, offsets, special = tokenize(tok, r)
    chosen = TokenSelection("entities", (entity,)).select(r, offsets, special)
    assert token_texts(r, offsets, chosen) == ["Harry", "Potter"]


def test_entities_match_whole_words_at_every_occurrence(tok):
    """Entities match as whole words (like the keyword classifier), at every occurrence."""
    r = render_prompt("Harry Potter and Harry went to Hogwarts", tok)
    ids, offsets, special = tokenize(tok, r)
    chosen = TokenSelection("entities", ("harry", "Hogwarts")).select(r, offsets, special)
    assert token_texts(r, offsets, chosen) == ["Harry", "Harry", "Hogwarts"]
    assert chosen == [0, 3, 7]
    assert TokenSelection("entities", ("arr", "warts"), fallback=None).select(r, offsets, special) == []


def test_entity_inside_a_longer_word_is_not_selected(tok):
    """'Muggle' does not select tokens of 'smuggled' (the classifier would not flag it either)."""
    r = render_prompt("The smuggled Muggle book", tok)
    ids, offsets, special = tokenize(tok, r)
    chosen = TokenSelection("entities", ("Muggle",), fallback=None).select(r, offsets, special)
    assert "".join(token_texts(r, offsets, chosen)).strip() == "Muggle"


def test_entities_from_dict_accepts_a_single_string():
    """A guard.json whose entities is one string means one entity, not its letters."""
    assert TokenSelection.from_dict({"strategy": "entities", "entities": "Harry Potter"}).entities == ("Harry Potter",)
    with pytest.raises(GuardError, match="list of strings"):
        TokenSelection.from_dict({"strategy": "entities", "entities": 3})


def test_entities_in_system_message_are_ignored(tok):
    """An entity that only occurs in the system message selects nothing from it (fallback applies)."""
    messages = [{"role": "system", "content": "Never discuss Harry Potter."}, {"role": "user", "content": "Where is Paris?"}]
    r = render_prompt(messages, tok)
    ids, offsets, special = tokenize(tok, r)
    sel = TokenSelection("entities", ("Harry Potter",), fallback=None)
    assert sel.select(r, offsets, special) == []


def test_entities_fallback(tok):
    """No entity present: fallback all_but_last (default), 'all', or nothing when fallback=None."""
    r = render_prompt("Paris is the capital of France", tok)
    ids, offsets, special = tokenize(tok, r)
    assert len(ids) == 6
    assert TokenSelection("entities", ("Hogwarts",)).select(r, offsets, special) == [0, 1, 2, 3, 4]
    assert TokenSelection("entities", ("Hogwarts",), fallback="all").select(r, offsets, special) == list(range(6))
    assert TokenSelection("entities", ("Hogwarts",), fallback=None).select(r, offsets, special) == []


def test_selection_validation():
    """Unknown strategy/fallback, 'entities' fallback, and entities without entity strings raise GuardError."""
    with pytest.raises(GuardError, match="unknown token selection 'middle'"):
        TokenSelection("middle")
    with pytest.raises(GuardError, match="unknown token selection"):
        TokenSelection("all", fallback="nope")
    with pytest.raises(GuardError, match="cannot itself be 'entities'"):
        TokenSelection("entities", ("x",), fallback="entities")
    with pytest.raises(GuardError, match="at least one non-empty entity"):
        TokenSelection("entities")
    with pytest.raises(GuardError, match="at least one non-empty entity"):
        TokenSelection("entities", ("  ", ""))


def test_selection_dict_round_trip():
    """to_dict/from_dict preserve strategy, entities and a None fallback."""
    sel = TokenSelection("entities", ["Harry Potter", "Hogwarts"], fallback=None)
    assert sel.entities == ("Harry Potter", "Hogwarts")
    data = sel.to_dict()
    assert data == {"strategy": "entities", "entities": ["Harry Potter", "Hogwarts"], "fallback": None}
    assert TokenSelection.from_dict(data) == sel
    assert TokenSelection.from_dict({"strategy": "all"}) == TokenSelection("all", (), "all_but_last")


def test_entities_given_as_plain_string(tok):
    """A single entity passed as a str should act as one entity (or be refused), not as characters."""
    r = render_prompt("Paris is the capital of France", tok)
    ids, offsets, special = tokenize(tok, r)
    try:
        chosen = TokenSelection("entities", "Harry Potter", fallback=None).select(r, offsets, special)
    except GuardError:
        return
    assert chosen == []



def test_one_token_user_text_is_corrupted_whole(tok):
    """all_but_last never leaves a one-token user text in the clear: its only token is selected."""
    r = render_prompt("Harry", tok)
    ids, offsets, special = tokenize(tok, r)
    assert len(user_token_indices(r, offsets, special)) == 1
    assert TokenSelection().select(r, offsets, special) == user_token_indices(r, offsets, special)


def test_user_message_found_when_the_template_cannot_render_prefixes(tok):
    """With a template that rejects partial conversations, the user's text is still located in its own
    turn, not in the role header or an earlier message with the same words."""
    picky = copy.deepcopy(tok)
    picky.chat_template = (
        "{% if messages[-1]['role'] != 'user' %}{{ raise_exception('must end with user') }}{% endif %}"
        + tok.chat_template
    )
    messages = [{"role": "system", "content": "user"}, {"role": "user", "content": "user"}]
    r = render_prompt(messages, picky)
    (start, end), = r.user_spans
    assert r.text[start:end] == "user"
    assert r.text[:start].endswith("<|im_start|>user\n")
    assert r.text[:start].count("user") == 2  # the system message's content and the user's role header
