"""Tests of eco_unlearn.runtime.guard: Target/Guard validation, decisions, and the on-disk artifact."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from eco_unlearn.classifier import CLASSIFIERS, KeywordClassifier
from eco_unlearn.runtime.corruption import CorruptionSpec
from eco_unlearn.errors import CorruptionError, GuardError, IncompatibleGuardError
from eco_unlearn.runtime.guard import FORMAT, FORMAT_VERSION, Guard, Target
from eco_unlearn.runtime.guarded import GuardedModel
from eco_unlearn.models import fingerprint
from eco_unlearn.runtime.tokens import TokenSelection
from unit_helpers import LengthClassifier, make_guard

NOISE = CorruptionSpec("gaussian_first_n", 1.0)


def kw(*words):
    return KeywordClassifier(list(words))


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("name", ["", "   ", None])
def test_target_needs_name(name):
    """A target with an empty (or non-string) name raises GuardError."""
    with pytest.raises(GuardError, match="non-empty name"):
        Target(name, kw("x"), corruption=NOISE)


@pytest.mark.parametrize("threshold", [-0.01, 1.01, float("nan"), "0.5", None])
def test_target_threshold_range(threshold):
    """Thresholds outside [0, 1], NaN or non-numbers raise GuardError."""
    with pytest.raises(GuardError, match="threshold"):
        Target("t", kw("x"), threshold=threshold, corruption=NOISE)


@pytest.mark.parametrize("threshold", [0, 0.0, 1, 1.0, 0.3])
def test_target_threshold_bounds_allowed(threshold):
    """0 and 1 are valid thresholds."""
    assert Target("t", kw("x"), threshold=threshold, corruption=NOISE).threshold == threshold


def test_target_rejects_non_classifier_and_bad_corruption():
    """The classifier must follow the protocol; the corruption spec is validated."""
    with pytest.raises(GuardError, match="classifier lacks"):
        Target("t", object(), corruption=NOISE)
    with pytest.raises(CorruptionError, match="unknown corruption"):
        Target("t", kw("x"), corruption=CorruptionSpec("nope", 1.0))
    with pytest.raises(CorruptionError, match="out of range"):
        Target("t", kw("x"), corruption=CorruptionSpec("gaussian_first_n", -1.0))


def test_guard_needs_targets_with_unique_names():
    """No targets, or repeated names, raise GuardError naming the duplicates."""
    with pytest.raises(GuardError, match="at least one target"):
        Guard([])
    with pytest.raises(GuardError, match="repeated: a"):
        Guard([Target("a", kw("x"), corruption=NOISE), Target("b", kw("y"), corruption=NOISE), Target("a", kw("z"), corruption=NOISE)])


def test_guard_target_lookup():
    """target() finds by name, and an unknown name lists the existing ones."""
    guard = Guard([Target("a", kw("x"), corruption=NOISE), Target("b", kw("y"), corruption=NOISE)])
    assert guard.target("b").name == "b"
    with pytest.raises(GuardError, match="has: a, b"):
        guard.target("c")


# ------------------------------------------------------------------------------------ decide


def test_decide_flags_per_threshold_and_reports_scores(length_classifier_kind):
    """A text is flagged when a score reaches its target's threshold; scores are per target."""
    # p = sigmoid(len - 10): 'abc' -> ~0.0009, 10 chars -> 0.5, 20 chars -> ~1.0
    length = LengthClassifier(torch.tensor(1.0), torch.tensor(-10.0))
    guard = Guard(
        [
            Target("long", length, threshold=0.5, corruption=NOISE),
            Target("hp", kw("Harry Potter"), threshold=1.0, corruption=NOISE),
        ]
    )
    decisions = guard.decide(["abc", "0123456789", "Harry Potter", "x" * 20])
    assert [d.flagged for d in decisions] == [False, True, True, True]
    assert [d.targets for d in decisions] == [[], ["long"], ["long", "hp"], ["long"]]
    assert decisions[0].scores["hp"] == 0.0
    assert decisions[0].scores["long"] == pytest.approx(torch.sigmoid(torch.tensor(-7.0)).item(), rel=1e-6)
    assert decisions[1].scores["long"] == pytest.approx(0.5)
    assert set(decisions[2].scores) == {"long", "hp"}
    assert decisions[0].corruptions == []
    assert all(d.corrupted_tokens == 0 for d in decisions)


def test_decide_threshold_is_inclusive():
    """score == threshold flags; threshold 1.0 on a keyword still flags a match."""
    guard = Guard([Target("hp", kw("Hogwarts"), threshold=1.0, corruption=NOISE)])
    assert [d.flagged for d in guard.decide(["Hogwarts", "Paris"])] == [True, False]


def test_two_targets_same_kind_keep_max_strength():
    """Two targets flagging a prompt with the same corruption kind: the strongest one is applied once."""
    guard = Guard(
        [
            Target("a", kw("Harry"), corruption=CorruptionSpec("gaussian_first_n", 0.5)),
            Target("b", kw("Potter"), corruption=CorruptionSpec("gaussian_first_n", 2.0)),
            Target("c", kw("Paris"), corruption=CorruptionSpec("gaussian_first_n", 9.0)),
        ]
    )
    (d,) = guard.decide(["Harry Potter"])
    assert d.flagged and d.targets == ["a", "b"]
    assert d.corruptions == [CorruptionSpec("gaussian_first_n", 2.0)]
    (d,) = guard.decide(["Potter or Harry"])
    assert d.corruptions == [CorruptionSpec("gaussian_first_n", 2.0)]


def test_two_targets_different_kinds_keep_both():
    """Different corruption kinds (or params) are not comparable: both specs are kept."""
    zero = CorruptionSpec("zero_topk", 4)
    noise = CorruptionSpec("gaussian_first_n", 1.0, {"n_dims": 8})
    noise_all = CorruptionSpec("gaussian_first_n", 0.1)
    guard = Guard(
        [Target("a", kw("Harry"), corruption=zero), Target("b", kw("Potter"), corruption=noise),
         Target("c", kw("Hogwarts"), corruption=noise_all)]
    )
    (d,) = guard.decide(["Harry Potter at Hogwarts"])
    assert d.targets == ["a", "b", "c"]
    assert d.corruptions == [zero, noise, noise_all]
    assert d.to_dict()["corruptions"] == [zero.to_dict(), noise.to_dict(), noise_all.to_dict()]


# ------------------------------------------------------------------------------------ save / load


def rich_guard(model) -> Guard:
    return Guard(
        [
            Target(
                "hp",
                KeywordClassifier(["Harry Potter"], patterns=[r"hogwart\w*"]),
                threshold=0.75,
                tokens=TokenSelection("entities", ("Harry Potter", "Hogwarts"), fallback=None),
                corruption=CorruptionSpec("gaussian_random_n", 0.3, {"n_dims": 8}),
                calibration={"forget_auc": 0.99, "n": 12},
            ),
            Target("fr", KeywordClassifier(["France"]), corruption=CorruptionSpec("zero_topk", 5)),
        ],
        model_fingerprint=fingerprint(model),
        seed=1234,
        metadata={"author": "tests", "nested": {"k": [1, 2]}},
    )


def test_save_load_round_trip(tmp_path, model):
    """save() then load() gives back the same guard: targets, classifier behaviour, fingerprint, seed."""
    guard = rich_guard(model)
    out = guard.save(tmp_path / "g")
    assert out == tmp_path / "g"
    assert sorted(p.name for p in out.iterdir()) == ["guard.json"]  # keyword classifiers have no weights
    data = json.loads((out / "guard.json").read_text())
    assert data["format"] == FORMAT and data["format_version"] == FORMAT_VERSION

    loaded = Guard.load(out)
    assert loaded.to_dict() == guard.to_dict()
    assert loaded.seed == 1234
    assert loaded.model_fingerprint == fingerprint(model)
    assert loaded.metadata == {"author": "tests", "nested": {"k": [1, 2]}}
    hp = loaded.target("hp")
    assert hp.threshold == 0.75
    assert hp.tokens == TokenSelection("entities", ("Harry Potter", "Hogwarts"), fallback=None)
    assert hp.corruption == CorruptionSpec("gaussian_random_n", 0.3, {"n_dims": 8})
    assert hp.calibration == {"forget_auc": 0.99, "n": 12}
    texts = ["harry potter", "Hogwartsian", "France", "Paris"]
    assert [d.targets for d in loaded.decide(texts)] == [d.targets for d in guard.decide(texts)]
    assert [d.targets for d in loaded.decide(texts)] == [["hp"], ["hp"], ["fr"], []]


def test_save_without_fingerprint(tmp_path):
    """A guard without model fingerprint round-trips with model None."""
    guard = make_guard(None, seed=5)
    loaded = Guard.load(guard.save(tmp_path / "g"))
    assert loaded.model_fingerprint is None and loaded.seed == 5
    assert json.loads((tmp_path / "g" / "guard.json").read_text())["model"] is None


def test_classifier_with_tensors_saved_and_reloaded(tmp_path, length_classifier_kind, model):
    """A registered classifier's tensors go to classifiers/<i>.safetensors and come back on load."""
    clf = LengthClassifier(torch.tensor(0.5), torch.tensor(-3.0))
    guard = Guard([Target("hp", kw("Hogwarts"), corruption=NOISE), Target("len", clf, threshold=0.9, corruption=NOISE)], model_fingerprint=fingerprint(model))
    path = guard.save(tmp_path / "g")
    weights = path / "classifiers" / "1.safetensors"
    assert weights.is_file()
    assert not (path / "classifiers" / "0.safetensors").exists()
    entry = json.loads((path / "guard.json").read_text())["targets"][1]["classifier"]
    assert entry == {"kind": "test-length", "config": {"note": "length"}, "weights": "classifiers/1.safetensors"}

    loaded = Guard.load(path).target("len").classifier
    assert isinstance(loaded, LengthClassifier)
    assert torch.equal(loaded.w, clf.w) and torch.equal(loaded.b, clf.b)
    texts = ["ab", "x" * 12]
    assert loaded.predict_proba(texts).tolist() == clf.predict_proba(texts).tolist()


def test_classifier_weights_missing_or_corrupt(tmp_path, length_classifier_kind):
    """Missing or corrupt safetensors weights raise GuardError."""
    guard = Guard([Target("len", LengthClassifier(torch.tensor(1.0), torch.tensor(0.0)), corruption=NOISE)])
    path = guard.save(tmp_path / "g")
    weights = path / "classifiers" / "0.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(GuardError, match="corrupt"):
        Guard.load(path)
    weights.unlink()
    with pytest.raises(GuardError, match="missing"):
        Guard.load(path)


def test_save_overwrites_existing_guard(tmp_path, model):
    """Saving over an existing guard replaces it and leaves no temporary folders."""
    path = tmp_path / "g"
    make_guard(model, seed=1).save(path)
    rich_guard(model).save(path)
    assert Guard.load(path).to_dict() == rich_guard(model).to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_failed_save_keeps_old_guard(tmp_path, model, length_classifier_kind, monkeypatch):
    """A save that fails midway leaves the previous guard loadable and unchanged, and no temp folders."""
    path = tmp_path / "g"
    old = rich_guard(model)
    old.save(path)
    before = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}

    failing = Guard([Target("hp", kw("x"), corruption=NOISE), Target("len", LengthClassifier(torch.tensor(1.0), torch.tensor(0.0), fail_tensors=True), corruption=NOISE)])
    with pytest.raises(RuntimeError, match="disk full"):
        failing.save(path)
    # also a failure in a built-in classifier's tensors()
    monkeypatch.setattr(KeywordClassifier, "tensors", lambda self: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        make_guard(model, seed=99).save(path)

    after = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after == before
    monkeypatch.undo()
    assert Guard.load(path).to_dict() == old.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


# ------------------------------------------------------------------------------------ load errors


@pytest.fixture
def saved(tmp_path, model):
    """A valid saved guard folder and its parsed guard.json."""
    path = rich_guard(model).save(tmp_path / "g")
    return path, json.loads((path / "guard.json").read_text())


def rewrite(path: Path, data) -> None:
    (path / "guard.json").write_text(json.dumps(data))


def test_load_missing_folder(tmp_path):
    """A path that does not exist raises GuardError 'no guard folder'."""
    with pytest.raises(GuardError, match="no guard folder"):
        Guard.load(tmp_path / "nope")


def test_load_file_instead_of_folder(tmp_path):
    """A regular file is not a guard folder."""
    (tmp_path / "f").write_text("{}")
    with pytest.raises(GuardError, match="is a file, not a guard folder"):
        Guard.load(tmp_path / "f")


def test_load_folder_without_manifest(tmp_path):
    """A folder without guard.json raises GuardError saying so."""
    (tmp_path / "g").mkdir()
    with pytest.raises(GuardError, match="no guard.json"):
        Guard.load(tmp_path / "g")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b""])
def test_load_invalid_json(saved, content):
    """A guard.json that is not JSON (or not UTF-8) raises GuardError 'corrupt'."""
    path, _ = saved
    (path / "guard.json").write_bytes(content)
    with pytest.raises(GuardError, match="corrupt"):
        Guard.load(path)


def test_load_wrong_format(saved):
    """A JSON file of another format raises GuardError about the 'format' field."""
    path, data = saved
    for bad in ({**data, "format": "something-else"}, {k: v for k, v in data.items() if k != "format"}, [1, 2]):
        rewrite(path, bad)
        with pytest.raises(GuardError, match="'format' field"):
            Guard.load(path)


def test_load_newer_format_version(saved):
    """A format version newer than this library reads raises GuardError asking to upgrade."""
    path, data = saved
    data["format_version"] = FORMAT_VERSION + 1
    rewrite(path, data)
    with pytest.raises(GuardError, match="format version.*upgrade"):
        Guard.load(path)


@pytest.mark.parametrize("version", ["1", None, 0])
def test_load_invalid_format_version(saved, version):
    """A non-integer or non-positive format version raises GuardError naming the bad value."""
    path, data = saved
    data["format_version"] = version
    rewrite(path, data)
    with pytest.raises(GuardError, match="invalid format_version"):
        Guard.load(path)


@pytest.mark.parametrize(
    "drop,field",
    [
        (lambda d: d.pop("targets"), "targets"),
        (lambda d: d["targets"][0].pop("threshold"), "threshold"),
        (lambda d: d["targets"][0].pop("name"), "name"),
        (lambda d: d["targets"][1].pop("corruption"), "corruption"),
        (lambda d: d["targets"][0]["classifier"].pop("kind"), "kind"),
        (lambda d: d["model"].pop("embedding_sha256"), "embedding_sha256"),
    ],
)
def test_load_missing_field(saved, drop, field):
    """A missing required field raises GuardError naming the field."""
    path, data = saved
    drop(data)
    rewrite(path, data)
    with pytest.raises(GuardError, match=f"missing field '{field}'"):
        Guard.load(path)


def test_load_unknown_classifier_kind(saved):
    """An unregistered classifier kind raises GuardError listing the known kinds."""
    path, data = saved
    data["targets"][0]["classifier"]["kind"] = "bert-9000"
    rewrite(path, data)
    with pytest.raises(GuardError, match="unknown classifier kind 'bert-9000'.*keyword"):
        Guard.load(path)


def test_load_unknown_corruption(saved):
    """An unknown corruption name raises GuardError (not a bare CorruptionError)."""
    path, data = saved
    data["targets"][1]["corruption"]["name"] = "melt"
    rewrite(path, data)
    with pytest.raises(GuardError, match="unknown corruption 'melt'"):
        Guard.load(path)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d["targets"][0].__setitem__("threshold", 1.5), "threshold"),
        (lambda d: d["targets"][0].__setitem__("threshold", float("nan")), "threshold nan must lie in"),
        (lambda d: d["targets"][0].__setitem__("threshold", "high"), "malformed"),
        (lambda d: d["targets"][0]["tokens"].__setitem__("strategy", "middle"), "unknown token selection"),
        (lambda d: d["targets"][0]["corruption"].__setitem__("strength", -1), "out of range"),
        (lambda d: d.__setitem__("targets", []), "at least one target"),
        (lambda d: d.__setitem__("targets", [d["targets"][0], d["targets"][0]]), "unique"),
        (lambda d: d["targets"][0]["classifier"]["config"].__setitem__("patterns", ["("]), "invalid regular"),
        (lambda d: d.__setitem__("targets", "oops"), "malformed"),
    ],
)
def test_load_invalid_values(saved, mutate, match):
    """Invalid values inside guard.json raise GuardError with a message about the problem."""
    path, data = saved
    mutate(data)
    rewrite(path, data)
    with pytest.raises(GuardError, match=match) as info:
        Guard.load(path)
    assert "guard.json" in str(info.value)


# ------------------------------------------------------------------------------------ check_model


def test_check_model_accepts_own_model(model, tok):
    """The guard attaches to the model it was built for, without warnings."""
    guard = make_guard(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guard.check_model(model)
        GuardedModel(model, tok, guard)


def test_check_model_rejects_other_model(model, other_model, tok):
    """A fingerprint from another model raises IncompatibleGuardError; force=True only warns."""
    guard = make_guard(other_model)
    with pytest.raises(IncompatibleGuardError, match="embedding weights"):
        guard.check_model(model)
    with pytest.raises(IncompatibleGuardError, match="force=True"):
        GuardedModel(model, tok, guard)
    with pytest.warns(UserWarning, match="another model"):
        guard.check_model(model, force=True)
    with pytest.warns(UserWarning, match="another model"):
        gm = GuardedModel(model, tok, guard, force=True)
    assert gm.guard is guard


def test_check_model_without_fingerprint_still_validates_strength(model):
    """Without a fingerprint any model is accepted with a warning, but strengths are checked against its hidden size."""
    with pytest.warns(UserWarning, match="no model fingerprint"):
        make_guard(None).check_model(model)
    too_many = make_guard(None, corruption=CorruptionSpec("zero_topk", 33))  # hidden size is 32
    with pytest.raises(CorruptionError, match=r"\[0, 32\]"):
        too_many.check_model(model)


def test_target_requires_a_corruption_spec():
    """A target cannot be built without a corruption, and CorruptionSpec has no default strength."""
    with pytest.raises(TypeError):
        Target("t", kw("x"))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        CorruptionSpec("gaussian_first_n")  # type: ignore[call-arg]
    with pytest.raises(GuardError, match="CorruptionSpec"):
        Target("t", kw("x"), corruption={"name": "gaussian_first_n", "strength": 1.0})


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 1.5, "7", True])
def test_guard_seed_must_be_a_64_bit_integer(seed):
    """Seeds that would overflow the noise generator (or are not integers) are refused up front."""
    with pytest.raises(GuardError, match="64-bit"):
        Guard([Target("t", kw("x"), corruption=NOISE)], seed=seed)


def test_save_refuses_a_folder_that_is_not_a_guard(tmp_path, model):
    """Saving into a folder holding other files (or onto a file) is refused and nothing is deleted."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "important.txt").write_text("keep me")
    with pytest.raises(GuardError, match="not a guard"):
        make_guard(model).save(folder)
    assert (folder / "important.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(GuardError, match="is a file"):
        make_guard(model).save(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    make_guard(model).save(empty)  # an empty folder is fine, and so is overwriting a guard
    make_guard(model, seed=3).save(empty)
    assert Guard.load(empty).seed == 3


def test_load_rejects_an_empty_model_fingerprint(saved):
    """'model': {} is malformed (only null means 'no fingerprint'), so the check cannot be switched off by accident."""
    path, data = saved
    data["model"] = {}
    rewrite(path, data)
    with pytest.raises(GuardError, match="malformed"):
        Guard.load(path)


def test_load_wraps_errors_of_custom_classifiers(saved, length_classifier_kind):
    """A registered classifier whose from_config raises gives a GuardError naming the target."""
    path, data = saved
    data["targets"][0]["classifier"] = {"kind": length_classifier_kind.kind, "config": {}}
    rewrite(path, data)
    with pytest.raises(GuardError, match="cannot rebuild"):
        Guard.load(path)


def test_unreadable_manifest_is_a_guard_error(saved):
    """A guard.json that cannot be read gives a GuardError, not an OSError traceback."""
    import os

    path, _ = saved
    if os.geteuid() == 0:
        os.replace(path / "guard.json", path / "guard.json.bak")
        (path / "guard.json").mkdir()  # root ignores file modes: a folder in its place cannot be read either
        with pytest.raises(GuardError):
            Guard.load(path)
    else:
        (path / "guard.json").chmod(0)
        with pytest.raises(GuardError, match="cannot read"):
            Guard.load(path)


def test_attach_and_detach(model, tok, other_model):
    """attach() checks the fingerprint; attach(None) removes the guard."""
    gm = GuardedModel(model, tok)
    with pytest.raises(IncompatibleGuardError):
        gm.attach(make_guard(other_model))
    assert gm.guard is None
    guard = make_guard(model)
    gm.attach(guard)
    assert gm.guard is guard
    gm.attach(None)
    assert gm.guard is None


def test_length_classifier_kind_is_cleaned_up():
    """The test classifier kind does not leak into the registry outside its fixture."""
    assert LengthClassifier.kind not in CLASSIFIERS
