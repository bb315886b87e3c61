"""The meta-trained, device-conditioned GNN encoder on a tiny synthetic multi-device problem.

Each synthetic device's latency is a known function of the live op counts of an NB201 cell: a
sum of per-op costs (ms), ``y = b_d * (1 + n_live . c_d)``, where ``c_d`` mixes a compute-bound
and a memory-bound cost profile. Source devices mix both; the target device is purely
memory-bound, so the average source device ranks its architectures badly and only adaptation
can recover the order.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from hwsurrogate.datasets import archspaces
from hwsurrogate.surrogates.features.nas import arch_vectors, vector_feature_names
from hwsurrogate.surrogates.fewshot import FewShotConfig, FewShotLatencyRegressor, score_predictions
from hwsurrogate.surrogates.fewshot.meta_gnn import MetaGNN, MetaGNNConfig

torch.set_num_threads(1)

COMPUTE = np.array([0.0, 0.05, 0.3, 0.9, 0.08])  # none, skip, conv1x1, conv3x3, avgpool
MEMORY = np.array([0.0, 0.35, 0.12, 0.18, 0.75])
SOURCE_MIX = (0.3, 0.5, 0.7, 0.85, 1.0)
TARGET_MIX = 0.0
TINY = MetaGNNConfig(steps=60, query_per_step=64, devices_per_step=3, hidden_channels=16, embed_dim=8)


def _keys(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 5, size=(n * 2, 6))
    return list(dict.fromkeys(archspaces.nb201_from_codes(c) for c in codes))[:n]


def _latency(keys: list[str], mix: float, base: float) -> np.ndarray:
    names = vector_feature_names("nb201")
    cols = [names.index(f"n_live_{op}") for op in archspaces.NB201_OPS]
    counts = arch_vectors("nb201", keys)[:, cols].astype(float)
    return base * (1.0 + counts @ (mix * COMPUTE + (1 - mix) * MEMORY))


KEYS = _keys(300, seed=0)
SOURCES = np.stack([_latency(KEYS, mix, base=1.0 + i) for i, mix in enumerate(SOURCE_MIX)], axis=1)
TRUTH = _latency(KEYS, TARGET_MIX, base=2.5)
REFS = np.arange(10)  # the first 10 table archs play HELP's reference architectures


def _z(lat: np.ndarray) -> np.ndarray:
    logl = np.log(lat)
    return (logl - logl.mean(0)) / logl.std(0)


@pytest.fixture(scope="module")
def gnn() -> MetaGNN:
    return MetaGNN(TINY).fit("nb201", KEYS, _z(SOURCES), REFS)


def _support(n: int = 20, seed: int = 1) -> np.ndarray:
    rest = np.setdiff1d(np.arange(len(KEYS)), REFS)
    return np.r_[REFS, np.random.default_rng(seed).choice(rest, size=n - len(REFS), replace=False)]


def _adapted_and_unadapted_spearman(gnn: MetaGNN) -> tuple[float, float]:
    """Spearman off the support of the adapted head, and of the mean source device."""
    E = gnn.embed(KEYS)
    sup = _support()
    test = np.setdiff1d(np.arange(len(KEYS)), sup)
    head = gnn.adapt(E[sup], np.log(TRUTH[sup]), np.log(TRUTH[REFS]))
    adapted = score_predictions(TRUTH[test], np.exp(gnn.predict(head, E[test])))["spearman"]
    unadapted = score_predictions(TRUTH[test], np.exp(np.log(SOURCES[test]).mean(1)))["spearman"]
    return adapted, unadapted


def test_adapted_gnn_head_beats_the_unadapted_average_source_device(gnn: MetaGNN) -> None:
    adapted, unadapted = _adapted_and_unadapted_spearman(gnn)
    assert adapted > 0.85
    assert adapted > unadapted + 0.15


def test_meta_training_lowers_the_few_shot_error_on_the_sources(gnn: MetaGNN) -> None:
    untrained = MetaGNN(replace(TINY, steps=1)).fit("nb201", KEYS, _z(SOURCES), REFS)
    sup = _support()
    test = np.setdiff1d(np.arange(len(KEYS)), sup)

    def mean_rho(m: MetaGNN) -> float:
        E = m.embed(KEYS)
        rhos = []
        for j in range(SOURCES.shape[1]):
            y = SOURCES[:, j]
            h = m.adapt(E[sup], np.log(y[sup]), np.log(y[REFS]))
            rhos.append(score_predictions(y[test], np.exp(m.predict(h, E[test])))["spearman"])
        return float(np.mean(rhos))

    assert mean_rho(gnn) > mean_rho(untrained) + 0.02


def test_gnn_parameters_round_trip_to_identical_embeddings_and_heads(gnn: MetaGNN) -> None:
    arrays, meta = gnn.to_arrays()
    again = MetaGNN.from_arrays({k: v.copy() for k, v in arrays.items()}, meta)
    np.testing.assert_array_equal(again.embed(KEYS), gnn.embed(KEYS))
    sup = _support()
    E = gnn.embed(KEYS)
    h1 = gnn.adapt(E[sup], np.log(TRUTH[sup]), np.log(TRUTH[REFS]))
    h2 = again.adapt(E[sup], np.log(TRUTH[sup]), np.log(TRUTH[REFS]))
    np.testing.assert_array_equal(gnn.predict(h1, E), again.predict(h2, E))


def test_wrong_reference_latencies_are_rejected_naming_the_argument(gnn: MetaGNN) -> None:
    E = gnn.embed(KEYS[:20])
    with pytest.raises(ValueError, match="ref_log_latency"):
        gnn.adapt(E, np.log(TRUTH[:20]), np.log(TRUTH[:3]))
    with pytest.raises(ValueError, match="ref_log_latency"):
        gnn.adapt(E, np.log(TRUTH[:20]), np.full(10, np.nan))


def test_latency_matrix_of_the_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="z must have shape"):
        MetaGNN(TINY).fit("nb201", KEYS, _z(SOURCES)[:-1])


@pytest.mark.parametrize(
    ("field", "value"), [("gnn", ("nas101",)), ("gnn_inner", "maml"), ("gnn_transfer_from", "nas101")]
)
def test_config_rejects_unknown_gnn_settings_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"FewShotConfig.{field}:"):
        FewShotConfig(**{field: value})


def test_meta_gnn_config_rejects_an_unknown_inner_loop() -> None:
    with pytest.raises(ValueError, match="MetaGNNConfig.inner"):
        MetaGNNConfig(inner="maml")


def _frame() -> pl.DataFrame:
    return pl.concat(
        pl.DataFrame(
            {
                "device_id": f"synth/src{j}",
                "space": "nb201",
                "arch_index": np.arange(len(KEYS)),
                "arch_key": KEYS,
                "latency_ms": SOURCES[:, j],
            }  # fmt: skip
        )
        for j in range(SOURCES.shape[1])
    )


@pytest.fixture(scope="module")
def fewshot_gnn() -> FewShotLatencyRegressor:
    cfg = FewShotConfig(
        meta_draws=1, meta_query=100, tau_grid=(0.01,), noise_grid=(0.1,), gnn=("nb201",), gnn_steps=30, gnn_prior_component=True,
        gnn_embed_dim=8,
    )  # fmt: skip
    return FewShotLatencyRegressor(cfg).fit(_frame())


def test_fewshot_model_with_gnn_adapts_and_appends_the_embedding(
    fewshot_gnn: FewShotLatencyRegressor,
) -> None:
    sm = fewshot_gnn.spaces_["nb201"]
    assert sm.n_gnn == 8
    np.testing.assert_allclose(sm.features[:, -8:].std(0), 1.0, atol=1e-3)
    sup = _support()
    pred = fewshot_gnn.predict(fewshot_gnn.adapt("nb201", [KEYS[i] for i in sup], TRUTH[sup]), KEYS)
    assert score_predictions(TRUTH, pred)["spearman"] > 0.9


def test_fewshot_model_with_gnn_saves_and_loads_to_identical_predictions(
    fewshot_gnn: FewShotLatencyRegressor, tmp_path: Path
) -> None:
    fewshot_gnn.save(tmp_path / "m.npz")
    loaded = FewShotLatencyRegressor.load(tmp_path / "m.npz")
    assert loaded.config == fewshot_gnn.config
    outside = [k for k in _keys(600, seed=7) if k not in set(KEYS)][:40]  # embedded by the GNN itself
    sup = _support()
    keys = [KEYS[i] for i in sup]
    for arch in (KEYS, outside):
        np.testing.assert_array_equal(
            loaded.predict(loaded.adapt("nb201", keys, TRUTH[sup]), arch),
            fewshot_gnn.predict(fewshot_gnn.adapt("nb201", keys, TRUTH[sup]), arch),
        )


def test_meta_sgd_inner_loop_also_adapts_to_the_new_device() -> None:
    sgd = MetaGNN(replace(TINY, inner="metasgd")).fit("nb201", KEYS, _z(SOURCES), REFS)
    adapted, unadapted = _adapted_and_unadapted_spearman(sgd)
    assert adapted > unadapted + 0.1


def test_cross_space_init_starts_from_the_other_spaces_message_passing_layers(gnn: MetaGNN) -> None:
    rng = np.random.default_rng(0)
    fb_keys = list(dict.fromkeys(archspaces.fbnet_from_codes(c) for c in rng.integers(0, 9, size=(80, 22))))
    z = rng.normal(size=(len(fb_keys), 3))
    fb = MetaGNN(replace(TINY, steps=1, lr=1e-12)).fit("fbnet", fb_keys, z, init=gnn)
    src, dst = gnn.members_[0].state_dict(), fb.members_[0].state_dict()
    assert fb.transferred_from_ == "nb201"
    np.testing.assert_allclose(dst["encoder.fwd.0.nn.0.weight"], src["encoder.fwd.0.nn.0.weight"], atol=1e-6)
    assert dst["encoder.embed.weight"].shape != src["encoder.embed.weight"].shape  # node features differ


def test_source_prior_on_the_embedding_is_stored_per_transform(fewshot_gnn: FewShotLatencyRegressor) -> None:
    sm = fewshot_gnn.spaces_["nb201"]
    assert sorted(sm.gnn_components) == sorted(fewshot_gnn.config.transforms)
    assert all(
        w.shape == (SOURCES.shape[1], sm.n_gnn) and np.abs(w).sum() > 0 for w in sm.gnn_components.values()
    )


def test_adapting_a_saved_gnn_model_on_table_archs_does_not_import_torch(
    fewshot_gnn: FewShotLatencyRegressor, tmp_path: Path
) -> None:
    import subprocess
    import sys

    fewshot_gnn.save(tmp_path / "m.npz")
    sup = _support()
    code = (
        "import sys, json, numpy as np\n"
        "from hwsurrogate.surrogates.fewshot import FewShotLatencyRegressor\n"
        f"m = FewShotLatencyRegressor.load({str(tmp_path / 'm.npz')!r})\n"
        f"keys = json.loads({json.dumps(json.dumps([KEYS[i] for i in sup]))})\n"
        f"y = np.array({TRUTH[sup].tolist()!r})\n"
        "m.predict(m.adapt('nb201', keys, y), keys)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
