"""Compiled trees (tl2cgen) answer as scikit-learn does, are cached by model hash and verified."""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from polars.testing import assert_frame_equal
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)

from hwsurrogate.surrogates.models import compiled_trees
from hwsurrogate.surrogates.models.tree_serving import (
    CACHE_ATTR,
    FrozenTrees,
    TreeRunner,
    positive_proba_trees,
    predict_trees,
    to_treelite,
)

# never `import tl2cgen` here: builds run in child processes (compiled_trees.build_in_subprocess)
if (_missing := compiled_trees.missing_builder()) is not None:
    pytest.skip(_missing, allow_module_level=True)


@pytest.fixture(scope="module")
def tree_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compiled-trees cache for the module: each tiny model is compiled once."""
    root = tmp_path_factory.mktemp("trees")
    root.chmod(0o700)
    return root


@pytest.fixture(autouse=True)
def _compiled_on(tree_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSURROGATE_COMPILED_TREES", "1")
    monkeypatch.setenv("HWSURROGATE_TREE_CACHE", str(tree_cache))


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 4))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.sin(np.nan_to_num(x[:, 0])) + np.nan_to_num(x[:, 1]) * 2 + 3.0
    q = rng.normal(size=(20, 4))
    q[::3, 1] = np.nan
    return x, y, np.vstack([q, [[np.inf, -np.inf, 0.0, np.nan]]])


def _swap(path: Path, data: bytes) -> None:
    """Replace ``path`` by a new file holding ``data`` (a new inode; a mapping of the old stays valid)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    tmp.chmod(0o700)
    os.replace(tmp, path)


def _built(model: object) -> TreeRunner:
    runner = TreeRunner(to_treelite(model))
    compiled_trees.build_in_subprocess(runner.checkpoint, runner.key)
    assert runner.compiled_ready() is not None
    assert "tl2cgen" not in sys.modules  # its bundled treelite must stay out of a serving process
    return runner


@pytest.mark.parametrize(
    "make",
    [
        lambda: HistGradientBoostingRegressor(max_iter=15, max_leaf_nodes=8, random_state=0),
        lambda: RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0),
    ],
)
def test_compiled_trees_match_sklearn_including_missing_values(make) -> None:  # noqa: ANN001
    x, y, q = _data()
    model = make().fit(x, y)
    if isinstance(model, RandomForestRegressor):
        q = np.where(np.isinf(q), 9.0, q)  # scikit-learn's forests refuse infinities
    runner = _built(model)
    np.testing.assert_allclose(runner.compiled.predict(q), model.predict(q), rtol=1e-9)
    np.testing.assert_allclose(runner.predict(q[:1]), model.predict(q[:1]), rtol=1e-9)
    cache: dict = {}  # the served path: the same built library, found by the model's hash
    np.testing.assert_allclose(predict_trees(model, q, cache=cache), model.predict(q), rtol=1e-9)
    assert next(iter(cache.values()))[2].compiled is not None


def test_compiled_classifier_probability_and_frozen_trees_match_sklearn() -> None:
    x, y, q = _data(1)
    model = HistGradientBoostingClassifier(max_iter=10, max_leaf_nodes=6, random_state=0).fit(x, y > 3.0)
    _built(model)
    np.testing.assert_allclose(positive_proba_trees(model, q), model.predict_proba(q)[:, 1], rtol=1e-9)
    frozen = pickle.loads(pickle.dumps(FrozenTrees.of(model)))
    np.testing.assert_allclose(frozen.predict(q), model.predict_proba(q)[:, 1], rtol=1e-9)
    assert frozen._model.compiled is not None


def test_value_whose_bits_read_as_missing_goes_to_gtil() -> None:
    x, y, _ = _data(2)
    model = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(x, y)
    runner = _built(model)
    odd = np.zeros((1, 4))
    odd.view(np.int32)[0, 0] = -1  # low half all ones: a tiny positive number, not missing
    assert runner.compiled.predict(odd) is None
    np.testing.assert_allclose(runner.predict(odd), model.predict(odd), rtol=1e-9)


def test_tampered_or_foreign_library_is_never_loaded(tree_cache: Path) -> None:
    x, y, _ = _data(3)
    model = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(x, y)
    runner = TreeRunner(to_treelite(model))
    lib = compiled_trees.build_in_subprocess(runner.checkpoint, runner.key)
    assert compiled_trees.load(runner.key) is not None
    good = lib.read_bytes()
    # the library is loaded (mapped) now: swap files by rename, never rewrite the mapped one in
    # place (that changes the mapped code under the process and crashed it at exit)
    _swap(lib, good + b"\0")  # changed after the build: its digest no longer matches
    assert compiled_trees.load(runner.key) is None
    _swap(lib, good)
    lib.parent.chmod(0o777)  # a folder others may write into is not trusted
    assert compiled_trees.load(runner.key) is None
    lib.parent.chmod(0o700)
    meta = json.loads((lib.parent / "build.json").read_text())
    assert meta["key"] == runner.key and meta["n_features"] == 4
    other = compiled_trees.model_key(runner.checkpoint + b"x")  # another model's key finds nothing
    assert compiled_trees.load(other) is None
    with pytest.raises(ValueError, match="hash"):
        compiled_trees.build(runner.checkpoint, other)
    with pytest.raises(ValueError, match="hash"):
        compiled_trees.build_in_subprocess(runner.checkpoint, other)


def test_no_tl2cgen_falls_back_to_gtil_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("HWSURROGATE_TREE_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(compiled_trees, "missing_builder", lambda: "tl2cgen is not installed (test)")
    monkeypatch.setattr(compiled_trees, "_logged", set())
    x, y, q = _data(4)
    model = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(x, y)
    with caplog.at_level(logging.INFO, logger=compiled_trees.__name__):
        for _ in range(2):
            cache: dict = {}
            np.testing.assert_allclose(predict_trees(model, q, cache=cache), model.predict(q), rtol=1e-9)
            assert next(iter(cache.values()))[2].compiled is None
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "tl2cgen is not installed" in caplog.records[0].message
    assert not (tmp_path / "empty").exists() or not os.listdir(tmp_path / "empty")


def test_detached_build_serves_once_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """request_build's process builds the library; a failed build is recorded and not retried."""
    import time

    root = tmp_path / "cache"
    monkeypatch.setenv("HWSURROGATE_TREE_CACHE", str(root))
    x, y, q = _data(5)
    model = HistGradientBoostingRegressor(max_iter=3, max_leaf_nodes=4, random_state=0).fit(x, y)
    runner = TreeRunner(to_treelite(model))
    root.mkdir(mode=0o700)
    dead = root / ".build-0123456789ab-dead"  # left by a build process that was killed
    dead.mkdir()
    os.utime(dead, (time.time() - 2 * compiled_trees.STALE_BUILD_S,) * 2)
    assert compiled_trees.request_build(runner.key, runner.checkpoint) == "started"
    assert not dead.exists()
    assert compiled_trees.request_build(runner.key, runner.checkpoint) == "building"  # one build at a time
    deadline = time.monotonic() + 120
    while compiled_trees.load(runner.key) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert compiled_trees.load(runner.key) is not None
    assert not (root / f"{runner.key}.building").exists()
    bad = compiled_trees.model_key(b"not a model")
    assert compiled_trees.request_build(bad, b"not a model") == "started"
    while not (root / f"{bad}.failed").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (root / f"{bad}.failed").exists() and compiled_trees.request_build(bad, b"not a model") == "off"


def test_a_build_prunes_older_formats_and_leaves_builds_under_way(tmp_path: Path) -> None:
    """A finished build removes the cache's builds of older formats (compiled_trees.prune), not a
    newer install's, not a build another process is writing; its own library still loads."""
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    root.chmod(0o700)

    def entry(name: str, fmt: int) -> Path:
        folder = root / compiled_trees.model_key(name.encode())
        folder.mkdir(mode=0o700)
        (folder / "trees.so").write_bytes(b"old")
        (folder / "build.json").write_text(json.dumps({"format": fmt}))
        return folder

    old, newer = (
        entry("old", compiled_trees.BUILD_FORMAT - 1),
        entry("newer", compiled_trees.BUILD_FORMAT + 1),
    )
    work = root / ".build-0123456789ab-live"  # another process's build under way
    work.mkdir(mode=0o700)
    (work / "model.treelite").write_bytes(b"x")
    marker = root / f"{compiled_trees.model_key(b'live')}.building"
    marker.touch()
    x, y, q = _data(6)
    model = HistGradientBoostingRegressor(max_iter=3, max_leaf_nodes=4, random_state=0).fit(x, y)
    runner = TreeRunner(to_treelite(model))
    compiled_trees.build_in_subprocess(runner.checkpoint, runner.key, root)
    assert not old.exists()
    assert newer.exists() and work.exists() and marker.exists()
    built = compiled_trees.load(runner.key, root)
    assert built is not None
    np.testing.assert_allclose(built.predict(q), model.predict(q), rtol=1e-9)


def test_builds_wait_for_a_free_slot_and_the_runner_asks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most $HWSURROGATE_COMPILED_BUILDS detached builds per cache: a model that finds the slots
    taken starts nothing (no marker, no work folder) and its runner asks again at a later check."""
    import time

    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("HWSURROGATE_TREE_CACHE", str(root))
    monkeypatch.setenv(compiled_trees.BUILDS_ENV, "1")
    x, y, _ = _data(5)
    model = HistGradientBoostingRegressor(max_iter=3, max_leaf_nodes=4, random_state=0).fit(x, y)
    runner = TreeRunner(to_treelite(model))
    other = root / f"{'0' * 64}.building"  # another model's build under way
    other.touch()
    assert compiled_trees.request_build(runner.key, runner.checkpoint) == "busy"
    assert not (root / f"{runner.key}.building").exists() and not list(root.glob(".build-*"))
    asked: list[str] = []
    real = compiled_trees.request_build

    def recorded(key: str, checkpoint: bytes) -> str:
        asked.append(real(key, checkpoint))
        return asked[-1]

    started: list[list[str]] = []  # the build process is not run: its command line is recorded
    monkeypatch.setattr(compiled_trees.subprocess, "Popen", lambda cmd, **_: started.append(cmd))
    monkeypatch.setattr(compiled_trees, "request_build", recorded)
    runner.compiled_ready()
    runner._next_check = 0.0  # the next check is due
    runner.compiled_ready()
    assert asked == ["busy", "busy"]
    os.utime(other, (time.time() - 2 * compiled_trees.STALE_BUILD_S,) * 2)  # that build died long ago
    runner._next_check = 0.0
    runner.compiled_ready()
    assert asked[-1] == "started" and len(started) == 1 and started[0][-1] == runner.key
    runner._next_check = 0.0
    runner.compiled_ready()
    assert len(asked) == 3  # started: not asked again
    monkeypatch.setenv(compiled_trees.BUILDS_ENV, "0")
    with pytest.raises(ValueError, match="HWSURROGATE_COMPILED_BUILDS"):
        compiled_trees.max_builds()


def test_frozen_trees_hold_one_copy_of_their_trees_and_pickle_the_same_bytes() -> None:
    """After the first prediction the frozen model keeps the treelite model, not also its checkpoint
    bytes; pickling serialises it again to exactly the bytes it was made from (same compiled key)."""
    from hwsurrogate.surrogates.models.tree_serving import FrozenTrees

    x, y, q = _data(7)
    model = HistGradientBoostingRegressor(max_iter=5, max_leaf_nodes=6, random_state=0).fit(x, y)
    frozen = FrozenTrees.of(model)
    original = frozen.checkpoint
    np.testing.assert_allclose(frozen.predict(q), model.predict(q), rtol=1e-9)
    assert frozen.checkpoint is None
    again = pickle.loads(pickle.dumps(frozen))
    assert again.checkpoint == original
    np.testing.assert_allclose(again.predict(q), model.predict(q), rtol=1e-9)


def test_gemm_model_one_query_through_compiled_trees_equals_sklearn() -> None:
    from .gemm_factories import assert_equals_sklearn, fitted_gemm_pyfunc

    model, rows = fitted_gemm_pyfunc(max_iter=10)
    runtime, power = model.runtime, model.power
    _built(runtime.model_)
    _built(power.model_)
    assert_equals_sklearn(model, rows.head(1))
    assert all(e[2].compiled is not None for m in (runtime, power) for e in vars(m)[CACHE_ATTR].values())
    # from the second query on, both models' trees answer in one call (one shared feature matrix)
    calls: list[int] = []
    real = compiled_trees.predict_together

    def counted(libs, x):  # noqa: ANN001, ANN202
        calls.append(len(libs))
        return real(libs, x)

    from hwsurrogate.surrogates.models import gemm_serving
    from hwsurrogate.surrogates.models.frozen import freeze

    frozen = pickle.loads(pickle.dumps(freeze("gemm", model))).frozen
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm_serving, "predict_together", counted)
        for i in range(4):
            got = assert_equals_sklearn(model, rows.slice(i, 1))
            frozen.predict_frame(rows.slice(i, 1))  # the first call builds its treelite models
            assert_frame_equal(frozen.predict_frame(rows.slice(i, 1)), got)
        assert_equals_sklearn(model, rows.head(3))
    assert calls == [2] * 12


def test_predict_together_answers_each_library_once_marked_and_checks_the_width() -> None:
    """Two libraries on one feature matrix (one copy, one missing-value pass) answer as each
    alone and as scikit-learn; batches past the kept buffers and a wrong width are handled."""
    x, y, q = _data(8)
    a = HistGradientBoostingRegressor(max_iter=12, max_leaf_nodes=8, random_state=0).fit(x, y)
    b = HistGradientBoostingRegressor(max_iter=7, max_leaf_nodes=5, random_state=1).fit(x, -y)
    libs = (_built(a).compiled, _built(b).compiled)
    for rows in (q[:1], q, np.resize(q, (compiled_trees.SCRATCH_ROWS + 5, 4))):
        got = compiled_trees.predict_together(libs, rows)
        assert got.shape == (2, len(rows))
        np.testing.assert_allclose(got[0], a.predict(rows), rtol=1e-9)
        np.testing.assert_allclose(got[1], b.predict(rows), rtol=1e-9)
        np.testing.assert_array_equal(got[1], libs[1].predict(rows))
    kept = compiled_trees.predict_together(libs, q[:1])
    compiled_trees.predict_together(libs, q[1:2])  # the answer is a copy, not the thread's buffer
    np.testing.assert_allclose(kept[0], a.predict(q[:1]), rtol=1e-9)
    with pytest.raises(ValueError, match="3 features; these compiled trees take 4"):
        compiled_trees.predict_together(libs, q[:, :3])
    with pytest.raises(ValueError, match="2-d"):
        compiled_trees.predict_together(libs, q[0])


def test_threads_predicting_at_once_each_get_their_own_answers() -> None:
    """Each thread reuses its own buffers: eight threads, each predicting its own rows (one row
    and a few at a time, one library and two) many times at once, always get their own answers."""
    import threading

    x, y, q = _data(9)
    a = HistGradientBoostingRegressor(max_iter=20, max_leaf_nodes=8, random_state=0).fit(x, y)
    b = HistGradientBoostingRegressor(max_iter=9, max_leaf_nodes=6, random_state=1).fit(x, y * 3)
    libs = (_built(a).compiled, _built(b).compiled)
    rng = np.random.default_rng(10)
    per_thread = [rng.normal(size=(1 + t % 3, 4)) for t in range(8)]
    for rows in per_thread[::2]:
        rows[0, 1] = np.nan  # half the threads mark missing values, half do not
    want = [(a.predict(r), b.predict(r)) for r in per_thread]
    assert len({w[0][0] for w in want}) >= 6  # mostly different answers (trees share some leaves)
    wrong: list[tuple[int, int]] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(400):
            if i % 2:
                got = compiled_trees.predict_together(libs, per_thread[t])
                ok = np.allclose(got[0], want[t][0], rtol=1e-9) and np.allclose(got[1], want[t][1], rtol=1e-9)
            else:
                ok = np.allclose(libs[0].predict(per_thread[t]), want[t][0], rtol=1e-9)
            if not ok:
                wrong.append((t, i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wrong == []
