"""Pruning the compiled-trees cache: only finished builds of older formats go (no tl2cgen needed).

Every test works in a temporary cache (``$HWSURROGATE_TREE_CACHE`` and ``root`` point at it),
never the user's ``~/.cache``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from hwsurrogate.surrogates.models import compiled_trees
from hwsurrogate.surrogates.models.compiled_trees import BUILD_FORMAT, prune


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "trees"
    cache.mkdir()
    cache.chmod(0o700)
    monkeypatch.setenv("HWSURROGATE_TREE_CACHE", str(cache))
    return cache


def _key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _entry(root: Path, name: str, meta: object, *, folder_name: str | None = None) -> Path:
    """A finished build's folder as :func:`compiled_trees.build` leaves it (``meta``: its record)."""
    folder = root / (folder_name or _key(name))
    folder.mkdir()
    (folder / compiled_trees.LIB_FILE).write_bytes(b"\x7fELF not really")
    if meta is not None:
        text = meta if isinstance(meta, str) else json.dumps(meta)
        (folder / compiled_trees.META_FILE).write_text(text)
    folder.chmod(0o700)
    return folder


def test_prune_removes_only_finished_builds_of_older_formats(root: Path) -> None:
    old = [_entry(root, f"old{f}", {"key": _key(f"old{f}"), "format": f}) for f in range(1, BUILD_FORMAT)]
    assert old, "BUILD_FORMAT 1 has no older format to prune"
    keep = [
        _entry(root, "current", {"key": _key("current"), "format": BUILD_FORMAT}),
        _entry(root, "newer", {"key": _key("newer"), "format": BUILD_FORMAT + 1}),  # a newer install's
        _entry(root, "norecord", None),
        _entry(root, "garbled", "{not json"),
        _entry(root, "listrecord", [1]),
        _entry(root, "noformat", {"key": _key("noformat")}),
        _entry(root, "textformat", {"format": "1"}),
        _entry(root, "notakey", {"format": 1}, folder_name="notakey"),
    ]
    shared = _entry(root, "shared", {"format": 1})
    shared.chmod(0o777)  # others may write into it: not ours to judge
    keep.append(shared)
    # a build under way: its work folder (with a record already written) and its marker
    work = root / f".build-{_key('busy')[:12]}-abcd"
    work.mkdir()
    (work / compiled_trees.META_FILE).write_text(json.dumps({"format": 1}))
    marker = root / f"{_key('busy')}.building"
    marker.touch()
    failed = root / f"{_key('old1')}.failed"
    failed.write_text("RuntimeError: x")
    keep += [work, marker, failed]

    removed = prune()  # the default root: $HWSURROGATE_TREE_CACHE
    assert sorted(removed) == sorted(old)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in keep)
    assert not list(root.glob(".build-pruned-*"))  # nothing left half removed
    assert prune(root) == []


def test_prune_of_a_missing_cache_does_nothing(tmp_path: Path) -> None:
    assert prune(tmp_path / "absent") == []


def test_processes_pruning_at_once_remove_each_build_once(root: Path) -> None:
    old = {_entry(root, f"old{i}", {"format": BUILD_FORMAT - 1}) for i in range(40)}
    current = _entry(root, "current", {"format": BUILD_FORMAT})
    results: list[list[Path]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        try:
            results.append(prune(root))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    removed = [p for r in results for p in r]
    assert sorted(removed) == sorted(old)  # each once: the rename decides which pruner removes it
    assert current.exists() and not list(root.glob(".build-pruned-*"))
