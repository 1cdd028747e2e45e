"""The TOFU baselines ECO is compared with: gradient unlearning of the target model (``training.METHODS``),
each result cached next to the target like the target itself, and a prompting baseline (no training).

An unlearned model's folder is named by a digest of everything that made it (the target folder, the
method's resolved settings, the forget, retain and alternative answers), so a repeated or resumed
comparison reuses it; ``unlearn.json`` inside records the run, its wall-clock time and peak memory.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import threading
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ...errors import TofuDataError
from ...io import as_json, atomic_dir, atomic_write_json
from ...models import load_model
from ...training.unlearn import UnlearnConfig, unlearn
from .data import TofuSplits, resolve_data_dir
from .eco import format_items
from .run import digest

__all__ = [
    "PROMPT_INSTRUCTION", "instructed_tokenizer", "load_idk_answers", "peak_memory", "unlearn_signatures", "unlearned_models",
]

Progress = Callable[[str, int, int], None]

PROMPT_INSTRUCTION = (
    "You must not reveal any information about the following authors: {authors}. If a question asks about "
    "them or their work, say that you do not know."
)


def _rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def peak_memory(interval: float = 0.2) -> Iterator[dict[str, int]]:
    """Sample this process's resident memory while inside; the dict yielded gets ``peak_rss_bytes`` (Linux;
    0 elsewhere). The whole process counts: models loaded before the block are part of the figure."""
    record = {"peak_rss_bytes": _rss_bytes()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            record["peak_rss_bytes"] = max(record["peak_rss_bytes"], _rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        stop.set()
        thread.join()
        record["peak_rss_bytes"] = max(record["peak_rss_bytes"], _rss_bytes())


def load_idk_answers(data_dir: str | None, count: int, seed: int = 0) -> list[str]:
    """``count`` "I don't know" answers drawn (seeded) from ``idontknow.jsonl`` in the TOFU folder."""
    folder = resolve_data_dir(data_dir)
    path = folder / "idontknow.jsonl" if folder is not None else None
    if path is None or not path.is_file():
        raise TofuDataError(f"idkdpo needs idontknow.jsonl in the TOFU data folder ({folder}); give --data-dir")
    answers = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith(("{", '"')):
            value = json.loads(text)
            text = value if isinstance(value, str) else str(value.get("answer", value.get("text", "")))
        if text:
            answers.append(text)
    if not answers:
        raise TofuDataError(f"{path} holds no answers")
    rng = random.Random(seed)
    return [rng.choice(answers) for _ in range(count)]


def _chat(target: Path) -> bool:
    """Whether the target's tokenizer has a chat template (read without loading the weights)."""
    from transformers import AutoTokenizer

    return bool(AutoTokenizer.from_pretrained(target).chat_template)


def _pairs(splits: TofuSplits, config: UnlearnConfig, chat: bool, data_dir: str | None) -> tuple[list, list, list[str] | None]:
    """The forget and retain (prompt, answer) pairs and, for methods that need them, the alternative answers."""
    method, _ = config.resolved()
    forget = [(i.prompt, i.answer) for i in format_items(splits.forget, chat)]
    retain = [(i.prompt, i.answer) for i in format_items(splits.retain_train, chat)]
    return forget, retain, load_idk_answers(data_dir, len(forget), config.seed) if method.alternate else None


def unlearn_signatures(
    target: Path, splits: TofuSplits, config: UnlearnConfig, epochs: Sequence[int], *, data_dir: str | None = None,
) -> dict[int, tuple[Path, dict[str, Any]]]:
    """Per epoch count, the folder ``unlearned_models`` caches that model in and the signature of everything
    that makes it (target folder, resolved settings, forget, retain and alternative answers), as it reads back
    from ``unlearn.json``. Reads the target's tokenizer only."""
    _, params = config.resolved()
    forget, retain, alternates = _pairs(splits, config, _chat(target), data_dir)
    data = {"forget": digest(forget), "retain": digest(retain), "alternates": digest(alternates)}
    keys = {}
    for count in sorted(set(epochs)):
        signature = as_json({"target": target.name, "config": asdict(replace(config, epochs=count)), "params": params, **data})
        keys[count] = (target.parent / f"{target.name}-{config.method}-{digest(signature)}", signature)
    return keys


def unlearned_models(
    target: Path,
    splits: TofuSplits,
    config: UnlearnConfig,
    epochs: Sequence[int] | None = None,
    *,
    data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[tuple[Path, dict[str, Any]]]:
    """The target unlearned with ``config`` for each of ``epochs`` (default ``config.epochs``) on the forget
    authors (retain: the retain authors' training pairs): per epoch count, its folder and its record (training
    result, seconds, peak memory, ``cached``). Each is cached under the digest of the run that makes it alone
    (``unlearn_signatures``); under the ``constant`` schedule one run to the largest missing count saves the
    others as it passes them (the same states, see ``UnlearnConfig``), and a checkpoint's seconds are the
    training time up to it."""
    counts = sorted(set(epochs or [config.epochs]))
    if config.schedule != "constant" and len(counts) > 1:
        return [found for count in counts for found in unlearned_models(
            target, splits, replace(config, epochs=count), data_dir=data_dir, progress=progress)]
    found: dict[int, tuple[Path, dict[str, Any]]] = {}
    wanted: dict[int, tuple[Path, Any]] = {}
    for count, (path, signature) in unlearn_signatures(target, splits, config, counts, data_dir=data_dir).items():
        record_path = path / "unlearn.json"
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            if record.get("signature") == signature:
                found[count] = (path, {**record, "cached": True})
                continue
        wanted[count] = (path, signature)
    if wanted:
        net, tokenizer = load_model(target)
        chat = bool(tokenizer.chat_template)
        forget, retain, alternates = _pairs(splits, config, chat, data_dir)
        longest = max(wanted)
        run = replace(config, epochs=longest)
        label = f"{config.method} lr={config.learning_rate:g} epochs={longest}"
        runs = {"epochs": longest, "saved": sorted(wanted)}

        def save(epoch: int, result: Any) -> None:
            if epoch not in wanted:
                return
            path, signature = wanted[epoch]
            partial = replace(result, config=replace(result.config, epochs=epoch), steps=epoch * result.steps // longest)
            record = {
                "signature": signature, "result": partial.to_dict(), "seconds": result.seconds,
                "peak_rss_bytes": memory["peak_rss_bytes"], "target": str(target), "run": runs,
            }
            shutil.rmtree(path, ignore_errors=True)
            with atomic_dir(path) as tmp:
                net.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                atomic_write_json(tmp / "unlearn.json", record)
            found[epoch] = (path, {**record, "cached": False})

        with peak_memory() as memory:
            unlearn(
                net, tokenizer, forget, retain, run, alternates=alternates, chat=chat,
                progress=(lambda step, total, loss: progress(label, step, total)) if progress else None,
                checkpoint=save,
            )
    return [found[count] for count in counts]


def instructed_tokenizer(tokenizer: Any, instruction: str) -> Any:
    """A copy of ``tokenizer`` whose chat template opens every conversation without a system message with
    ``instruction`` as one: the prompting baseline, scored through the same code as every model."""
    if not tokenizer.chat_template:
        raise TofuDataError("the prompting baseline needs a chat model (its tokenizer has no chat template)")
    instructed = copy.deepcopy(tokenizer)
    instructed.chat_template = (
        "{%- if messages[0]['role'] != 'system' %}{%- set messages = [{'role': 'system', 'content': "
        + json.dumps(instruction) + "}] + messages %}{%- endif %}" + tokenizer.chat_template
    )
    return instructed
