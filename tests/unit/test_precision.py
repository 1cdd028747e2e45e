"""The float type rule (``precision``) and the strength search's ``dtype``: bfloat16 autocast where asked,
float32 otherwise, with the same verdicts on a tiny model."""

from __future__ import annotations

import pytest
import torch

from eco_unlearn.classifier import KeywordClassifier
from eco_unlearn.data.items import PromptItem
from eco_unlearn.errors import SearchError
from eco_unlearn.fitting import FitConfig, SearchConfig, fit_guard
from eco_unlearn.precision import DTYPES, autocast, fast_bfloat16, use_bfloat16


def test_the_rule_follows_the_name_and_auto_follows_the_hardware():
    assert use_bfloat16("bfloat16", "cpu") and not use_bfloat16("float32", "cpu")
    assert use_bfloat16("auto", "cpu") == fast_bfloat16()
    assert set(DTYPES) == {"auto", "float32", "bfloat16"}


@pytest.mark.parametrize("dtype, expected", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_autocast_runs_matmuls_in_the_chosen_type(dtype, expected):
    layer = torch.nn.Linear(4, 4)
    with autocast(dtype, "cpu") as enabled:
        assert layer(torch.ones(2, 4)).dtype == expected
    assert enabled == (expected == torch.bfloat16)


def test_an_unknown_search_dtype_is_a_clear_error():
    with pytest.raises(SearchError, match="the search's dtype must be 'auto', 'float32' or 'bfloat16', not 'float16'"):
        SearchConfig(dtype="float16")


def _fit(model, tok, dtype):
    """A fit whose every forward pass of the model records its output's dtype."""
    seen = []
    hook = model.get_output_embeddings().register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    items = [PromptItem(f"Who is Harry Potter {i}?", answer="A wizard.", paraphrased_answer="A wizard boy.",
                        perturbed_answers=("A dog.", "A cat.")) for i in range(6)]
    reference = [PromptItem(f"Who is Ron Weasley {i}?", answer="A friend.", paraphrased_answer="A pal.",
                            perturbed_answers=("A dog.", "A cat.")) for i in range(6)]
    from eco_unlearn.fitting.objectives import make_objective

    objective = make_objective("match_reference", items, chat=False, reference_items=reference, target=0.05)
    config = FitConfig(chat=False, search=SearchConfig(method="scan", strength_range=(0.01, 10.0), budget=4, dtype=dtype))
    try:
        result = fit_guard(model, tok, items, config=config, classifier=KeywordClassifier(["Harry Potter"]), objective=objective)
    finally:
        hook.remove()
    return result, seen


def test_the_search_runs_in_bfloat16_when_asked_and_in_float32_by_default(model, tok):
    plain, plain_seen = _fit(model, tok, "float32")
    fast, fast_seen = _fit(model, tok, "bfloat16")
    assert plain_seen and set(plain_seen) == {torch.float32}
    assert fast_seen and set(fast_seen) == {torch.bfloat16}
    assert fast.guard.metadata["fit_config"]["search"]["dtype"] == "bfloat16"
    assert plain.guard.metadata["fit_config"]["search"]["dtype"] == "float32"
    assert abs(fast.report.objective.before - plain.report.objective.before) < 0.2  # the same statistic, rounded
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched
