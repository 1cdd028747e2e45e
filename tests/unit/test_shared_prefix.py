"""score_shared (one prefill per prompt, its KV cache reused for each continuation) gives the values of
GuardedModel.score, bare and with corrupted prompts, in chat and plain mode, across chunk boundaries."""

from __future__ import annotations

import pytest
import torch

from eco_unlearn import GuardedModel
from eco_unlearn.errors import PromptError
from eco_unlearn.runtime.shared_prefix import score_shared

PROMPTS = ["Who taught at Hogwarts with Harry Potter?", "What is the capital of France?", "Name a wizard."]
GROUPS = [
    [" Albus Dumbledore taught there.", " Snape.", " A dog named Rex who lived in a very long house."],
    [" Paris.", " Lyon is a city."],
    [" Merlin.", " Gandalf the grey wizard.", " Harry.", " Ron."],
]


def plain(guarded, chat):
    prompts = [p for p, group in zip(PROMPTS, GROUPS) for _ in group]
    flat = guarded.score(prompts, [c for group in GROUPS for c in group], chat=chat, batch_size=4)
    out, start = [], 0
    for group in GROUPS:
        out.append(flat[start : start + len(group)])
        start += len(group)
    return out


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("guarded_too", [False, True])
@pytest.mark.parametrize("batch_size", [2, 64])
def test_shared_prefix_scores_equal_the_plain_scores(model, tok, guard, chat, guarded_too, batch_size):
    guarded = GuardedModel(model, tok, guard if guarded_too else None)
    fast = score_shared(guarded, PROMPTS, GROUPS, chat=chat, batch_size=batch_size)
    slow = plain(guarded, chat)
    assert [len(g) for g in fast] == [len(g) for g in GROUPS]
    for fast_group, slow_group in zip(fast, slow):
        for f, s in zip(fast_group, slow_group):
            assert f.shape == s.shape
            torch.testing.assert_close(f, s, atol=1e-4, rtol=1e-4)
    if guarded_too:  # the corruption reached the prefill: scores differ from the bare model's
        bare = score_shared(GuardedModel(model, tok), PROMPTS, GROUPS, chat=chat)
        assert not torch.allclose(bare[0][0], fast[0][0], atol=1e-3)


def test_shared_prefix_refuses_empty_and_mismatched_groups(model, tok):
    guarded = GuardedModel(model, tok)
    with pytest.raises(PromptError, match="no continuation"):
        score_shared(guarded, PROMPTS[:1], [[]])
    with pytest.raises(PromptError, match="groups of continuations"):
        score_shared(guarded, guarded.plan(PROMPTS[:2]), GROUPS[:1])


def test_match_reference_and_tofu_evaluation_give_the_same_values_either_way(model, tok, guard):
    from eco_unlearn.bench.tofu.evaluate import TofuEvalConfig, evaluate_tofu
    from eco_unlearn.data.items import PromptItem
    from eco_unlearn.fitting.objectives import make_objective

    items = [
        PromptItem(p, answer=g[0].strip(), paraphrased_answer=g[-1].strip(), perturbed_answers=tuple(a.strip() for a in g[1:]))
        for p, g in zip(PROMPTS, GROUPS)
    ]
    guarded = GuardedModel(model, tok, guard)
    values = []
    for shared in (True, False):
        objective = make_objective("match_reference", items, reference_values=[0.5, 1.0, 2.0], shared_prefix=shared, chat=False)
        values.append(objective.per_item(guarded))
    assert values[0].shape == (3,)
    assert values[0] == pytest.approx(values[1], rel=1e-4)
    sets = {"forget": items, "retain": items, "real_authors": items, "world_facts": items}
    fast, slow = (
        evaluate_tofu(guarded, sets, config=TofuEvalConfig(max_new_tokens=2, shared_prefix=shared, chat=False))
        for shared in (True, False)
    )
    for split in sets:
        for f, s in zip(fast.items[split], slow.items[split]):
            assert f["answer_nll"] == pytest.approx(s["answer_nll"], rel=1e-4)
            assert f["perturbed_nll"] == pytest.approx(s["perturbed_nll"], rel=1e-4)
            assert f["truth_ratio"] == pytest.approx(s["truth_ratio"], rel=1e-3)


def test_scoring_without_generation_keeps_the_probability_metrics(model, tok):
    from eco_unlearn.bench.tofu.evaluate import TofuEvalConfig, evaluate_tofu
    from eco_unlearn.data.items import PromptItem

    items = [PromptItem(p, answer=g[0].strip(), paraphrased_answer=g[1].strip(), perturbed_answers=(g[-1].strip(),))
             for p, g in zip(PROMPTS, GROUPS)]
    sets = {"forget": items, "retain": items, "real_authors": items, "world_facts": items}
    guarded = GuardedModel(model, tok)
    full = evaluate_tofu(guarded, sets, config=TofuEvalConfig(max_new_tokens=2, chat=False))
    cheap = evaluate_tofu(guarded, sets, config=TofuEvalConfig(generate=False, chat=False))
    assert "model_utility" in full.summary and "model_utility" not in cheap.summary
    assert "forget_Q_A_ROUGE" not in cheap.summary and cheap.items["forget"][0]["generation"] is None
    assert cheap.summary["model_utility_no_rouge"] == pytest.approx(full.summary["model_utility_no_rouge"])
    assert cheap.summary["forget_truth_ratio"] == pytest.approx(full.summary["forget_truth_ratio"])
