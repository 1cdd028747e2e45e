"""Tests of eco_unlearn.io: atomic file and folder writes."""

from __future__ import annotations

import ctypes
import json
import os

import pytest

from eco_unlearn import io as eio
from eco_unlearn.io import atomic_dir, atomic_write_json, atomic_write_text


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_write_json_writes_and_replaces(tmp_path):
    """JSON is written (indented, trailing newline), replaced on rewrite, with no temp files left."""
    path = tmp_path / "sub" / "data.json"
    atomic_write_json(path, {"a": 1, "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 1, "b": [1, 2]}
    assert path.read_text().endswith("}\n") and '\n  "a": 1' in path.read_text()
    atomic_write_json(path, {"c": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"c": "é"}
    assert listing(path.parent) == ["data.json"]


def test_atomic_write_json_unserialisable_keeps_old(tmp_path):
    """Data that cannot be serialised raises and leaves the old file as it was."""
    path = tmp_path / "data.json"
    atomic_write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert listing(tmp_path) == ["data.json"]


def test_atomic_write_text_failed_rename_removes_temp(tmp_path, monkeypatch):
    """If the final rename fails, the temp file is removed and the old content stays."""
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(eio.os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert listing(tmp_path) == ["f.txt"]


def test_atomic_dir_success_replaces_folder(tmp_path):
    """On success the new folder replaces the old one completely; no temp or backup folders remain."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("stale")
    with atomic_dir(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path and tmp.is_dir()
        (tmp / "new.txt").write_text("new")
        assert (target / "stale.txt").exists()  # untouched until the body finishes
    assert tree(target) == {"new.txt": b"new"}
    assert listing(tmp_path) == ["out"]


def test_atomic_dir_exception_leaves_existing_folder(tmp_path):
    """If the body raises, the existing folder is untouched and the temp folder is removed."""
    target = tmp_path / "out"
    (target / "nested").mkdir(parents=True)
    (target / "a.txt").write_text("A")
    (target / "nested" / "b.bin").write_bytes(b"\x00\x01")
    before = tree(target)
    seen = {}
    with pytest.raises(ValueError, match="halfway"):
        with atomic_dir(target) as tmp:
            seen["tmp"] = tmp
            (tmp / "a.txt").write_text("partial")
            raise ValueError("halfway")
    assert tree(target) == before
    assert not seen["tmp"].exists()
    assert listing(tmp_path) == ["out"]


def test_atomic_dir_exception_creates_nothing(tmp_path):
    """A failed write to a new path leaves no folder at all."""
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "new") as tmp:
            (tmp / "x").write_text("x")
            raise KeyboardInterrupt
    assert listing(tmp_path) == []


def test_atomic_dir_failed_final_rename_restores_old(tmp_path, monkeypatch):
    """If moving the new folder into place fails, the old folder is moved back."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((str(src), str(dst)))
        if len(calls) == 2:  # 1: old -> backup, 2: tmp -> target (fails), 3: backup -> target
            raise OSError("cross-device")
        return real_replace(src, dst)

    monkeypatch.setattr(eio.os, "replace", flaky)
    monkeypatch.setattr(eio, "_exchange", lambda a, b: False)  # the two-rename path, as without renameat2
    with pytest.raises(OSError, match="cross-device"):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert len(calls) == 3
    assert tree(target) == {"keep.txt": b"keep"}
    assert listing(tmp_path) == ["out"]


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "renameat2"), reason="no renameat2 in this C library")
def test_atomic_dir_swaps_in_one_step_and_keeps_no_backup(tmp_path, monkeypatch):
    """Replacing a folder never renames it away first (readers see old or new), and leaves no backup."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    renames = []
    real_replace = eio.os.replace
    monkeypatch.setattr(eio.os, "replace", lambda a, b: (renames.append((a, b)), real_replace(a, b)))
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert renames == []  # renameat2(RENAME_EXCHANGE) swapped the folders
    assert tree(target) == {"new.txt": b"new"}
    assert listing(tmp_path) == ["out"]


def test_atomic_writes_use_normal_permissions(tmp_path):
    """Saved files and folders are readable by others under the usual umask, not private like temp files."""
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
