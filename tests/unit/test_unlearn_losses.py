"""The baselines' losses on hand-checkable tensors, and each method, run a few steps on the tiny model,
changing its weights (only the MLP of one layer for RMU)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from eco_unlearn.errors import FinetuneError
from eco_unlearn.training.losses import (
    activation_mse, dpo_loss, kl_to_reference, mean_nll, npo_loss, sequence_nll, simnpo_loss, undial_loss,
)
from eco_unlearn.training.methods import METHODS, rmu_layer
from eco_unlearn.training.unlearn import UnlearnConfig, unlearn

LN2 = math.log(2)


def test_sequence_nll_sums_the_labelled_tokens_only():
    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: each labelled token costs ln 4
    labels = torch.tensor([[-100, 2, 3]])
    nll, count = sequence_nll(logits, labels)
    assert count.tolist() == [2] and nll.item() == pytest.approx(2 * math.log(4))
    assert mean_nll(nll, count).item() == pytest.approx(math.log(4))


def test_preference_losses_equal_2ln2_over_beta_when_nothing_moved():
    nll = torch.tensor([3.0, 5.0])
    assert npo_loss(nll, nll, beta=0.1).item() == pytest.approx(2 * LN2 / 0.1)
    assert dpo_loss(nll, nll, nll, nll, beta=0.5).item() == pytest.approx(2 * LN2 / 0.5)
    assert simnpo_loss(torch.tensor([6.0]), torch.tensor([3]), beta=2.0, delta=2.0).item() == pytest.approx(LN2)
    # NPO falls as the forget NLL rises above the reference's: -(2/b) log sigmoid(b * 10)
    assert npo_loss(torch.tensor([13.0]), torch.tensor([3.0]), beta=0.1).item() == pytest.approx(
        -20 * math.log(1 / (1 + math.exp(-1.0))))


def test_kl_is_zero_for_the_same_model_and_the_hand_value_otherwise():
    labels = torch.tensor([[-100, 1]])
    logits = torch.tensor([[[0.0, 0.0], [9.0, 9.0]]])
    assert kl_to_reference(logits, logits, labels).item() == pytest.approx(0.0)
    reference = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]])  # p_ref = (3/4, 1/4) vs p = (1/2, 1/2)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_to_reference(logits, reference, labels).item() == pytest.approx(expected)


def test_activation_mse_and_undial_by_hand():
    activations = torch.zeros(1, 2, 4)
    target = torch.tensor([2.0, 0.0, 0.0, 0.0])
    assert activation_mse(activations, target, torch.tensor([[1, 1]])).item() == pytest.approx(1.0)  # 4 / 4 dims
    assert activation_mse(activations, target, torch.tensor([[0, 0]])).item() == 0.0
    logits = torch.zeros(1, 2, 2)
    labels = torch.tensor([[-100, 0]])
    # teacher (0, 0) with token 0 lowered by ln 3: soft label (1/4, 3/4); the model is uniform: CE = ln 2
    assert undial_loss(logits, logits, labels, beta=math.log(3)).item() == pytest.approx(LN2)


FORGET = [("Who is Ron Weasley?", "A wizard with red hair."), ("Where does Ron live?", "At the Burrow.")]
RETAIN = [("Who is Harry Potter?", "The boy who lived."), ("What is Hogwarts?", "A school.")]
IDK = ["I don't know.", "I have no idea."]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_few_steps_of_each_method_change_the_model(model, tok, name):
    net = copy.deepcopy(model)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    config = UnlearnConfig(method=name, epochs=3, learning_rate=1e-2, batch_size=2, dtype="float32", warmup_fraction=0.0)
    seen = []
    result = unlearn(net, tok, FORGET, RETAIN, config, alternates=IDK, chat=False, progress=lambda *a: seen.append(a))
    assert result.steps == 3 and [s for s, _, _ in seen] == [1, 2, 3] and len(result.epoch_losses) == 3
    assert all(math.isfinite(v) for v in result.epoch_losses)
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    if name == "rmu":
        layer = rmu_layer(net, result.params)
        assert changed and all(k.startswith(f"model.layers.{layer}.mlp.") for k in changed)
    else:
        assert len(changed) > len(before) // 2
    assert not net.training
    assert [p.requires_grad for p in net.parameters()] == [p.requires_grad for p in model.parameters()]


def test_bad_settings_name_the_problem(model, tok):
    with pytest.raises(FinetuneError, match="unknown unlearning method"):
        unlearn(model, tok, FORGET, RETAIN, UnlearnConfig(method="gradient"))
    with pytest.raises(FinetuneError, match="npo has no hyper-parameter alpha"):
        unlearn(model, tok, FORGET, RETAIN, UnlearnConfig(method="npo", params={"alpha": 1.0}))
    with pytest.raises(FinetuneError, match="alternative answer"):
        unlearn(model, tok, FORGET, RETAIN, UnlearnConfig(method="idkdpo"))


@pytest.mark.parametrize("name", ["gd", "npo"])
def test_constant_schedule_checkpoints_equal_shorter_runs(model, tok, name):
    """Under ``constant`` the state after epoch k of a 3-epoch run is the state a k-epoch run ends in, so one
    run scores an epoch grid; under ``linear`` it is not (the decay depends on the length)."""
    def run(epochs: int, schedule: str, checkpoint=None) -> torch.nn.Module:
        net = copy.deepcopy(model)
        config = UnlearnConfig(method=name, epochs=epochs, learning_rate=1e-2, batch_size=1, dtype="float32",
                               warmup_fraction=0.5, schedule=schedule)
        unlearn(net, tok, FORGET, RETAIN, config, chat=False, checkpoint=checkpoint)
        return net

    saved, seconds = {}, []

    def keep(epoch, result):
        assert len(result.epoch_losses) == epoch and not long_net.training  # saved in eval mode
        seconds.append(result.seconds)
        saved[epoch] = {k: v.clone() for k, v in long_net.state_dict().items()}

    long_net = copy.deepcopy(model)
    config = UnlearnConfig(method=name, epochs=3, learning_rate=1e-2, batch_size=1, dtype="float32",
                           warmup_fraction=0.5, schedule="constant")
    unlearn(long_net, tok, FORGET, RETAIN, config, chat=False, checkpoint=keep)
    assert sorted(saved) == [1, 2, 3] and seconds == sorted(seconds) and seconds[0] > 0
    for epochs in (1, 2):
        short = run(epochs, "constant").state_dict()
        assert all(torch.allclose(short[k], saved[epochs][k], atol=1e-6, rtol=1e-5) for k in short)
    linear = run(2, "linear").state_dict()
    assert not all(torch.allclose(linear[k], saved[2][k], atol=1e-6, rtol=1e-5) for k in linear)


def test_unknown_schedule_is_refused(model, tok):
    with pytest.raises(FinetuneError, match="schedule must be 'linear' or 'constant', not 'cosine'"):
        unlearn(model, tok, FORGET, RETAIN, UnlearnConfig(method="ga", schedule="cosine"))
