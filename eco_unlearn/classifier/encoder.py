"""A prompt classifier on a text-encoder backbone (default: all-MiniLM-L6-v2).

Two training modes:

* ``linear``: the encoder stays frozen; logistic regression (scikit-learn, balanced class weights, its
  regularisation picked by cross-validation on the training prompts) on L2-normalised mean-pooled
  embeddings. Seconds on CPU, and the guard stores only the head.
* ``finetune``: the whole encoder and a two-class head are trained with class-weighted cross-entropy;
  training stops early on a validation split carved from the training prompts alone. The guard
  stores the fine-tuned encoder.

A text longer than the encoder's window is scored window by window, and its score is the highest.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from .backbone import TextEncoder
from ..errors import ClassifierError, GuardError, ModelError
from .base import register_classifier
from ..validation import number

__all__ = ["EncoderClassifier"]

Progress = Callable[[str, int, int], None]
MODES = ("linear", "finetune")


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ClassifierError(f"{what}: text(s) at position(s) {', '.join(map(str, bad[:10]))} are empty or not strings")
    return texts


@register_classifier
class EncoderClassifier:
    """Encoder + head; ``fit(forget, retain, extra_negatives=...)`` then ``predict_proba(texts)``.

    Settings: ``backbone`` (an embedded name such as ``"minilm"``, a local folder or a hub id),
    ``mode`` (``"linear"`` or ``"finetune"``), the encoder's window (``max_length``, overlap ``stride``),
    ``batch_size``, ``dtype`` (``"auto"``, ``"float32"``, ``"bfloat16"``); for linear, ``C`` (inverse
    regularisation, ``None`` = cross-validated); for finetune, ``epochs``, ``learning_rate``,
    ``patience`` and ``validation_fraction``. ``seed`` fixes every random choice.
    """

    kind: ClassVar[str] = "encoder"

    def __init__(
        self,
        backbone: str = "minilm",
        *,
        mode: str = "linear",
        max_length: int = 128,
        stride: int = 32,
        batch_size: int = 64,
        dtype: str = "auto",
        device: str = "cpu",
        C: float | None = None,
        epochs: int = 4,
        learning_rate: float = 5e-5,
        patience: int = 1,
        validation_fraction: float = 0.15,
        seed: int = 0,
        _encoder: TextEncoder | None = None,
    ) -> None:
        if mode not in MODES:
            raise ClassifierError(f"unknown classifier mode {mode!r}; choose {' or '.join(MODES)}")
        if C is not None:
            number(C, "C", low=0, low_open=True, error=ClassifierError)
        number(validation_fraction, "validation_fraction", low=0, high=1, low_open=True, high_open=True,
               error=ClassifierError)
        self.mode, self.C, self.seed = mode, C, seed
        self.epochs, self.learning_rate, self.patience = epochs, learning_rate, patience
        self.validation_fraction = validation_fraction
        self.encoder = _encoder or TextEncoder(
            backbone, max_length=max_length, stride=stride, batch_size=batch_size, dtype=dtype, device=device
        )
        self.head: torch.nn.Linear | None = None  # linear: 1 logit; finetune: 2 logits
        self.training_report: dict[str, Any] = {}

    @property
    def fitted(self) -> bool:
        return self.head is not None

    # ----------------------------------------------------------------------------------- training
    def fit(
        self,
        forget_texts: Sequence[str],
        retain_texts: Sequence[str],
        *,
        extra_negatives: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> "EncoderClassifier":
        """Train on forget prompts (positives) against retain prompts and general negatives."""
        positives = _check_texts(forget_texts, "forget texts")
        negatives = _check_texts(retain_texts, "retain texts") + _check_texts(extra_negatives, "extra negatives")
        if not positives:
            raise ClassifierError("the forget set is empty: give at least one prompt to forget")
        if not negatives:
            raise ClassifierError("there are no negatives: give retain prompts or general prompts")
        texts = positives + negatives
        labels = np.array([1] * len(positives) + [0] * len(negatives), dtype=np.int64)
        if self.mode == "linear":
            self._fit_linear(texts, labels, progress)
        else:
            self._fit_finetune(texts, labels, progress)
        return self

    def _fit_linear(self, texts: list[str], labels: np.ndarray, progress: Progress | None) -> None:
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        if progress:
            progress("embedding training prompts", 0, 1)
        features, owner = self.encoder.embed(texts)
        features = _normalise(features)
        y = labels[owner]
        folds = int(min(3, np.bincount(y, minlength=2).min()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's announced API changes, not ours
            if self.C is None and folds >= 2:
                model = LogisticRegressionCV(
                    Cs=np.logspace(-0.5, 3, 8), cv=folds, class_weight="balanced", scoring="neg_log_loss", max_iter=5000
                ).fit(features, y)
                chosen = float(model.C_[0])
            else:
                chosen = self.C if self.C is not None else 1.0
                model = LogisticRegression(C=chosen, class_weight="balanced", max_iter=5000).fit(features, y)
        head = torch.nn.Linear(features.shape[1], 1)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(model.coef_, dtype=torch.float32))
            head.bias.copy_(torch.as_tensor(model.intercept_, dtype=torch.float32))
        self.head = head
        self.training_report = {"mode": "linear", "C": chosen, "windows": int(len(y)), "positives": int(labels.sum())}
        if progress:
            progress("embedding training prompts", 1, 1)

    def _fit_finetune(self, texts: list[str], labels: np.ndarray, progress: Progress | None) -> None:
        from sklearn.model_selection import train_test_split

        torch.manual_seed(self.seed)
        train_idx, val_idx = train_test_split(
            np.arange(len(texts)), test_size=self.validation_fraction, stratify=labels if labels.sum() >= 2 else None,
            random_state=self.seed,
        )
        ids, owner = self.encoder.windows(texts)
        y = torch.as_tensor(labels[owner])
        in_train = np.isin(owner, train_idx)
        train_windows, val_windows = np.flatnonzero(in_train), np.flatnonzero(~in_train)
        counts = np.bincount(labels[train_idx], minlength=2).astype(np.float64)
        weights = torch.as_tensor(counts.sum() / (2 * np.maximum(counts, 1)), dtype=torch.float32)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(self.encoder.device))
        model = self.encoder.model
        head = torch.nn.Linear(self.encoder.hidden_size, 2).to(self.encoder.device)
        optimiser = torch.optim.AdamW(
            [{"params": model.parameters(), "lr": self.learning_rate}, {"params": head.parameters(), "lr": 1e-3}],
            weight_decay=0.01,
        )
        batch = 32
        steps_per_epoch = math.ceil(len(train_windows) / batch)
        total = steps_per_epoch * self.epochs
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: max(0.0, 1 - step / max(total, 1)))
        rng = np.random.default_rng(self.seed)
        best = (math.inf, None, None, -1)
        history, stale, step = [], 0, 0
        for epoch in range(self.epochs):
            model.train()
            order = train_windows[rng.permutation(len(train_windows))]
            for start in range(0, len(order), batch):
                chosen = order[start : start + batch]
                padded = self.encoder.tokenizer.pad({"input_ids": [ids[i] for i in chosen]}, return_tensors="pt")
                pooled = self.encoder.pooled(padded["input_ids"].to(self.encoder.device), padded["attention_mask"].to(self.encoder.device))
                loss = loss_fn(head(pooled), y[chosen].to(self.encoder.device))
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), 1.0)
                optimiser.step()
                schedule.step()
                step += 1
                if progress:
                    progress(f"fine-tuning, epoch {epoch + 1}/{self.epochs}", step, total)
            model.eval()
            val_loss = self._validation_loss(ids, val_windows, y, head, loss_fn)
            history.append({"epoch": epoch + 1, "validation_loss": val_loss})
            if val_loss < best[0] - 1e-4:
                best, stale = (val_loss, copy.deepcopy(model.state_dict()), copy.deepcopy(head.state_dict()), epoch + 1), 0
            else:
                stale += 1
                if stale > self.patience:
                    break
        model.load_state_dict(best[1])
        head.load_state_dict(best[2])
        model.eval()
        self.head = head.eval()
        self.encoder.backbone_sha256 = self.encoder.fingerprint()
        self.training_report = {
            "mode": "finetune", "best_epoch": best[3], "history": history,
            "train_prompts": int(len(train_idx)), "validation_prompts": int(len(val_idx)),
        }

    @torch.no_grad()
    def _validation_loss(self, ids, windows, y, head, loss_fn) -> float:
        if len(windows) == 0:
            return math.inf
        total = 0.0
        for positions, input_ids, attention in self.encoder.batches([ids[i] for i in windows]):
            logits = head(self.encoder.pooled(input_ids, attention))
            labels = y[windows[positions]].to(logits.device)
            total += float(loss_fn(logits, labels)) * len(positions)
        return total / len(windows)

    # --------------------------------------------------------------------------------- prediction
    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each text is in the forget scope (the highest over its windows)."""
        if self.head is None:
            raise ClassifierError("this classifier is not fitted yet; call fit() first")
        texts = list(texts)
        if not texts:
            return np.zeros(0, dtype=np.float64)
        ids, owner = self.encoder.windows(texts)
        window_scores = np.zeros(len(ids), dtype=np.float64)
        for positions, input_ids, attention in self.encoder.batches(ids):
            pooled = self.encoder.pooled(input_ids, attention)
            if self.mode == "linear":
                probs = torch.sigmoid(self.head(torch.nn.functional.normalize(pooled, dim=-1))[:, 0])
            else:
                probs = torch.softmax(self.head(pooled), dim=-1)[:, 1]
            window_scores[positions] = probs.double().cpu().numpy()
        scores = np.zeros(len(texts), dtype=np.float64)
        np.maximum.at(scores, owner, window_scores)
        return scores

    # ----------------------------------------------------------------------------------- saving
    def to_config(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            **self.encoder.config(),
            "C": self.C,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "patience": self.patience,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
            "training": self.training_report,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.head is None:
            raise ClassifierError("cannot save an unfitted classifier; call fit() first")
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        if self.mode == "finetune":
            tensors.update({f"encoder.{k}": v for k, v in self.encoder.model.state_dict().items()})
        return tensors

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "EncoderClassifier":
        mode = config.get("mode", "linear")
        encoder_state = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
        if mode == "finetune" and not encoder_state:
            raise GuardError("a fine-tuned encoder classifier needs its encoder weights, and they are missing")
        try:
            encoder = TextEncoder.from_config(config, encoder_state or None)
        except ModelError as exc:
            raise GuardError(str(exc)) from None
        keys = {k: v for k, v in config.items() if k in ("C", "epochs", "learning_rate", "patience", "validation_fraction", "seed")}
        classifier = cls(mode=mode, _encoder=encoder, **keys)
        head_state = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
        if "weight" not in head_state or "bias" not in head_state:
            raise GuardError("the classifier's head weights are missing")
        weight = head_state["weight"]
        head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict(head_state)
        classifier.head = head.to(encoder.device).eval()
        classifier.training_report = config.get("training", {})
        return classifier

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "not fitted"
        return f"EncoderClassifier({self.encoder.name!r}, mode={self.mode!r}, dtype={self.encoder.dtype!r}, {state})"


def _normalise(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
