"""The ``eco`` lm-evaluation-harness model on the tiny model: exactly ``hf`` when nothing is flagged,
continuations never corrupted, one decision and one corruption per question, mixed batches, generation."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

import torch  # noqa: E402
from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from eco_unlearn import GuardedModel  # noqa: E402
from eco_unlearn.bench.mcq.lmeval_tasks import write_lm_eval_tasks  # noqa: E402
from eco_unlearn.data.mmlu import McqQuestion  # noqa: E402
from eco_unlearn.integrations.lm_eval import EcoLM  # noqa: E402
from unit_helpers import make_guard  # noqa: E402

QUESTIONS = [
    McqQuestion("Where is Hogwarts?", ("Scotland", "France", "Spain", "Italy"), 0, "magic"),
    McqQuestion("Who is Harry Potter?", ("A dog", "A wizard", "A city", "A fox"), 1, "magic"),
    McqQuestion("What is the capital of France?", ("Rome", "Paris", "Oslo", "Bern"), 1, "geography"),
    McqQuestion("Which animal is lazy?", ("The fox", "The cat", "The dog", "The sun"), 2, "geography"),
]


def _instance(context: str, continuation: str, idx: int = 0) -> Instance:
    return Instance("loglikelihood", {}, (context, continuation), idx)


@pytest.fixture(scope="module")
def lms(saved_model_dir, model):
    """hf, eco with a guard flagging Harry Potter prompts, and eco without a guard, on the same weights."""
    common = {"pretrained": str(saved_model_dir), "device": "cpu", "batch_size": 4, "dtype": "float32"}
    return HFLM(**common), EcoLM(guard=make_guard(model), **common)


def _record(lm):
    calls = []
    handle = lm.model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs.get("inputs_embeds")), with_kwargs=True)
    return calls, handle


def test_nothing_flagged_gives_exactly_hf_metrics(lms, saved_model_dir, tmp_path):
    hf, eco = lms
    tasks = write_lm_eval_tasks(QUESTIONS[2:], tmp_path)  # geography: the guard flags none of it
    runs = [simple_evaluate(model=lm, tasks=tasks, num_fewshot=0, task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
                            log_samples=True, bootstrap_iters=0) for lm in (hf, eco)]
    for task in tasks:
        assert runs[0]["results"][task]["acc,none"] == runs[1]["results"][task]["acc,none"]
        assert [s["resps"] for s in runs[0]["samples"][task]] == [s["resps"] for s in runs[1]["samples"][task]]


def test_registered_by_name_for_simple_evaluate(saved_model_dir, tmp_path):
    tasks = write_lm_eval_tasks(QUESTIONS[:1], tmp_path)
    out = simple_evaluate(model="eco", model_args=f"pretrained={saved_model_dir},device=cpu,dtype=float32",
                          tasks=tasks, task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False), bootstrap_iters=0)
    assert out["results"][tasks[0]]["acc,none"] in (0.0, 1.0)


def test_flagged_context_is_corrupted_and_continuations_never(lms):
    hf, eco = lms
    context = "Tell me about Harry Potter and Hogwarts. The answer is"
    requests = [_instance(context, c) for c in (" the wizard of the school", " a lazy dog in the sun")]
    calls, handle = _record(eco)
    try:
        guarded = eco.loglikelihood(requests)
    finally:
        handle.remove()
    assert [g[0] for g in guarded] != [h[0] for h in hf.loglikelihood(requests)]
    (embeds,) = [c for c in calls if c is not None]
    clean = eco.model.get_input_embeddings()
    ctx_ids, _ = eco._encode_pair(context, " the wizard of the school")
    for row, request in zip(embeds, requests):
        ids = eco.tok_encode(context + request.args[1])
        cont = len(ids) - len(ctx_ids)
        tokens = torch.tensor(ids)
        # left padding: the sequence ends at the last position
        assert torch.equal(row[-cont:], clean(tokens[-cont:]))  # continuation: the clean embeddings
        assert not torch.allclose(row[-len(ids):-cont], clean(tokens[:-cont]))  # context: corrupted


def test_all_choices_share_one_corruption(lms):
    _, eco = lms
    context = "Who is Harry Potter?\nAnswer:"
    requests = [_instance(context, c) for c in (" A wizard of the school", " A lazy dog")]
    calls, handle = _record(eco)
    try:
        eco.loglikelihood(requests)
    finally:
        handle.remove()
    (embeds,) = [c for c in calls if c is not None]
    n_ctx = len(eco.tok_encode(context))
    lengths = [len(eco.tok_encode(context + r.args[1])) for r in requests]
    contexts = [row[-n:][:n_ctx] for row, n in zip(embeds, lengths)]
    assert torch.equal(contexts[0], contexts[1])


def test_mixed_batch_gives_each_request_its_own_decision(lms):
    hf, eco = lms
    requests = [_instance("Who is Harry Potter?\nAnswer:", " A"), _instance("What is the capital of France?\nAnswer:", " B"),
                _instance("Who is Harry Potter?\nAnswer:", " B")]
    guarded, plain = eco.loglikelihood(requests), hf.loglikelihood(requests)
    assert guarded[1] == plain[1]  # unflagged: exactly hf
    assert guarded[0][0] != plain[0][0] and guarded[2][0] != plain[2][0]
    bare = GuardedModel(eco.model, eco.tokenizer, eco.guarded.guard)
    _, continuation = eco._encode_pair("Who is Harry Potter?\nAnswer:", " A")
    (expected,) = bare.score_ids(["Who is Harry Potter?\nAnswer:"], [continuation])
    assert guarded[0][0] == pytest.approx(float(expected.logprobs.sum()), abs=1e-4)


def test_generation_corrupts_the_flagged_prompt_only(lms):
    hf, eco = lms
    kwargs = {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": False}
    requests = [Instance("generate_until", {}, (p, dict(kwargs)), i)
                for i, p in enumerate(["Tell me about Harry Potter and Hogwarts.", "What is the capital of France?"])]
    guarded, plain = eco.generate_until(requests), hf.generate_until([Instance("generate_until", {}, (r.args[0], dict(kwargs)), 0) for r in requests])
    assert guarded[1] == plain[1]
    expected = GuardedModel(eco.model, eco.tokenizer, eco.guarded.guard).generate(
        ["Tell me about Harry Potter and Hogwarts."], max_new_tokens=6)[0]
    assert guarded[0] == expected.split("\n\n")[0]
