"""Targets and guards: what to forget, how to recognise it, and how to corrupt it.

A ``Guard`` is an artifact on disk: a folder with ``guard.json`` (format version, targets, corruption
configs, thresholds, calibration statistics, model fingerprint, seed) and one safetensors file per
classifier that has weights.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..classifier.base import PromptClassifier, build_classifier, read_tensors, write_tensors
from .corruption import CorruptionSpec
from ..errors import GuardError, IncompatibleGuardError
from ..io import atomic_dir, atomic_write_json
from ..models import ModelFingerprint, fingerprint as fingerprint_of
from .tokens import TokenSelection
from ..validation import integer, is_number

__all__ = ["FORMAT", "FORMAT_VERSION", "Guard", "GuardDecision", "Target", "strongest_corruptions"]

FORMAT = "eco-unlearn-guard"
FORMAT_VERSION = 1


@dataclass
class Target:
    """One forget scope: a classifier with its threshold, and the corruption applied when it fires."""

    name: str
    classifier: PromptClassifier
    corruption: CorruptionSpec
    threshold: float = 0.5
    tokens: TokenSelection = field(default_factory=TokenSelection)
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise GuardError("a target needs a non-empty name")
        if not (is_number(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise GuardError(f"target {self.name!r}: threshold {self.threshold!r} must lie in [0, 1]")
        if not isinstance(self.corruption, CorruptionSpec):
            raise GuardError(f"target {self.name!r}: corruption must be a CorruptionSpec")
        if not isinstance(self.classifier, PromptClassifier):
            raise GuardError(f"target {self.name!r}: the classifier lacks predict_proba/to_config/tensors/from_config")
        self.corruption.validate()


@dataclass
class GuardDecision:
    """What the guard decided for one prompt.

    A flagged prompt gets the union of ``selections`` (its targets' token selections) corrupted with each
    of ``corruptions``: the decision carries all that planning needs, so decisions made elsewhere (a
    server failing closed) can be planned without the guard. ``to_dict`` reports what was decided and
    done, not the selections (they are the guard's configuration).
    """

    flagged: bool
    targets: list[str]
    scores: dict[str, float]
    corrupted_tokens: int = 0
    corruptions: list[CorruptionSpec] = field(default_factory=list)
    selections: list[TokenSelection] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "targets": self.targets,
            "scores": self.scores,
            "corrupted_tokens": self.corrupted_tokens,
            "corruptions": [c.to_dict() for c in self.corruptions],
        }


def strongest_corruptions(targets: Sequence[Target]) -> list[CorruptionSpec]:
    """The corruption of a prompt several targets flag: per corruption kind, its highest strength.

    Strengths of different kinds are not comparable, so each distinct kind is applied in turn.
    """
    best: dict[str, CorruptionSpec] = {}
    for target in targets:
        spec = target.corruption
        key = json.dumps([spec.name, spec.params], sort_keys=True)
        if key not in best or spec.strength > best[key].strength:
            best[key] = spec
    return list(best.values())


@dataclass
class Guard:
    """One or more targets, the model they were built for, and the seed of their noise."""

    targets: list[Target]
    model_fingerprint: ModelFingerprint | None = None
    seed: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.targets:
            raise GuardError("a guard needs at least one target")
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GuardError(f"target names must be unique; repeated: {', '.join(duplicates)}")
        integer(self.seed, "the guard seed", minimum=-(2**63), maximum=2**63 - 1, error=GuardError,
                what="a 64-bit signed integer")

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        raise GuardError(f"no target named {name!r}; this guard has: {', '.join(t.name for t in self.targets)}")

    def decide(self, texts: Sequence[str]) -> list[GuardDecision]:
        """Classify user texts against every target; a text is flagged when any score reaches its threshold."""
        scores = {t.name: [float(s) for s in t.classifier.predict_proba(list(texts))] for t in self.targets}
        decisions = []
        for i in range(len(texts)):
            row = {name: values[i] for name, values in scores.items()}
            hit = [t for t in self.targets if row[t.name] >= t.threshold]
            decisions.append(GuardDecision(
                bool(hit), [t.name for t in hit], row, corruptions=strongest_corruptions(hit),
                selections=list(dict.fromkeys(t.tokens for t in hit)),
            ))
        return decisions

    def check_model(self, model: Any, *, force: bool = False, fingerprint: ModelFingerprint | None = None) -> None:
        """Refuse a model whose fingerprint differs from the one this guard was built for.

        With ``force=True`` a mismatch only warns: the strengths were tuned for other embeddings.
        ``fingerprint`` is the model's, if already computed (hashing its embedding matrix is costly).
        """
        actual = fingerprint if fingerprint is not None else fingerprint_of(model)
        for target in self.targets:
            target.corruption.validate(actual.hidden_size)
        if self.model_fingerprint is None:
            warnings.warn(
                "this guard has no model fingerprint, so nothing checks that its strengths suit this model",
                stacklevel=3,
            )
            return
        differences = self.model_fingerprint.differences(actual)
        if not differences:
            return
        message = (
            f"this guard was built for another model ({'; '.join(differences)}); "
            "fit a guard for this model, or pass force=True (--force) to attach it anyway"
        )
        if not force:
            raise IncompatibleGuardError(message)
        warnings.warn(message, stacklevel=2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "eco_unlearn_version": __version__,
            "seed": self.seed,
            "model": self.model_fingerprint.to_dict() if self.model_fingerprint else None,
            "targets": [
                {
                    "name": t.name,
                    "threshold": t.threshold,
                    "tokens": t.tokens.to_dict(),
                    "corruption": t.corruption.to_dict(),
                    "classifier": {"kind": t.classifier.kind, "config": t.classifier.to_config()},
                    "calibration": t.calibration,
                }
                for t in self.targets
            ],
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        """Write the artifact folder atomically: a failure leaves any earlier guard at ``path`` intact.

        ``path`` must be new, empty, or an earlier guard: any other folder is refused, never replaced.
        """
        data = self.to_dict()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise GuardError(f"cannot save a guard to {path}: it is a file")
        if path.is_dir() and any(path.iterdir()) and not (path / "guard.json").is_file():
            raise GuardError(
                f"cannot save a guard to {path}: the folder holds other files and is not a guard; "
                "choose a new or empty folder"
            )
        with atomic_dir(path) as tmp:
            for i, target in enumerate(self.targets):
                tensors = target.classifier.tensors()
                if tensors:
                    relative = f"classifiers/{i}.safetensors"
                    (tmp / "classifiers").mkdir(exist_ok=True)
                    write_tensors(tensors, tmp / relative)
                    data["targets"][i]["classifier"]["weights"] = relative
            atomic_write_json(tmp / "guard.json", data)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Guard":
        """Read and validate a guard folder; any problem raises ``GuardError`` saying what is wrong."""
        path = Path(path)
        manifest = path / "guard.json"
        if not path.exists():
            raise GuardError(f"no guard folder at {path}")
        if not path.is_dir():
            raise GuardError(f"{path} is a file, not a guard folder")
        if not manifest.is_file():
            raise GuardError(f"{path} is not a guard: it has no guard.json")
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except OSError as exc:
            raise GuardError(f"cannot read {manifest}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GuardError(f"{manifest} is corrupt (not valid JSON: {exc})") from None
        try:
            return cls._from_dict(data, path)
        except GuardError as exc:
            raise GuardError(f"{manifest}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise GuardError(f"{manifest} is malformed ({detail})") from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any], root: Path) -> "Guard":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GuardError("not an eco-unlearn guard (its 'format' field is missing or wrong)")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise GuardError(f"invalid format_version {version!r}; expected an integer from 1 to {FORMAT_VERSION}")
        if version > FORMAT_VERSION:
            raise GuardError(
                f"guard format version {version!r} is newer than this eco-unlearn reads ({FORMAT_VERSION}); upgrade eco-unlearn"
            )
        targets = []
        for entry in data["targets"]:
            spec = entry["classifier"]
            tensors = read_tensors(root / spec["weights"]) if spec.get("weights") else {}
            try:
                classifier = build_classifier(spec["kind"], spec.get("config", {}), tensors)
            except GuardError as exc:
                raise GuardError(f"target {entry['name']!r}: {exc}") from None
            targets.append(
                Target(
                    name=entry["name"],
                    classifier=classifier,
                    threshold=float(entry["threshold"]),
                    tokens=TokenSelection.from_dict(entry["tokens"]),
                    corruption=CorruptionSpec.from_dict(entry["corruption"]),
                    calibration=entry.get("calibration", {}),
                )
            )
        model = data.get("model")
        return cls(
            targets=targets,
            model_fingerprint=ModelFingerprint.from_dict(model) if model is not None else None,
            seed=data.get("seed", 0),
            metadata=data.get("metadata", {}),
        )
