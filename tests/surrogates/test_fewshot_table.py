"""The per-layer cost-table component of the few-shot model (FewShotConfig.table_component).

Synthetic FBNet devices whose latency is exactly an additive per-layer lookup table,
``y = c_d + sum_l T_d[l, op_l]`` (ms), with every device's table a mix of a compute-bound and a
memory-bound table. The target device lies outside the sources' mixes, so the known answer is its
own table; 20 measurements cannot pin 198 costs without a prior, but the source tables span it.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from hwsurrogate.datasets import archspaces
from hwsurrogate.surrogates.fewshot import FewShotConfig, FewShotLatencyRegressor, score_predictions

torch.set_num_threads(1)

N_OPS = len(archspaces.FBNET_OPS)
RNG = np.random.default_rng(7)
COMPUTE = RNG.gamma(2.0, 0.5, size=(archspaces.FBNET_N_LAYERS, N_OPS))
MEMORY = RNG.gamma(2.0, 0.5, size=(archspaces.FBNET_N_LAYERS, N_OPS))
SOURCE_MIX = (0.2, 0.35, 0.5, 0.65, 0.8)  # share of the compute table
TARGET_MIX = 0.0
CODES = np.random.default_rng(0).integers(0, N_OPS, size=(400, archspaces.FBNET_N_LAYERS))
KEYS = list(dict.fromkeys(archspaces.fbnet_from_codes(c) for c in CODES))
CODES = np.array([[archspaces.FBNET_OPS.index(o) for o in k.split(" ")] for k in KEYS])
#: the cost-table component on, the span component off (each test switches one of them)
CONFIG = FewShotConfig(
    gnn=(),
    meta_draws=1,
    meta_query=100,
    tau_grid=(0.01,),
    noise_grid=(0.1,),
    table_component=("fbnet",),
    table_cov_scales=(1.0, 10.0),
    span_component=(),
)


def _table(mix: float) -> np.ndarray:
    return mix * COMPUTE + (1 - mix) * MEMORY


def _latency(table: np.ndarray, base: float = 5.0) -> np.ndarray:
    return base + table[np.arange(archspaces.FBNET_N_LAYERS), CODES].sum(axis=1)


def _frame() -> pl.DataFrame:
    parts = [
        pl.DataFrame(
            {
                "device_id": f"syn/src{i}",
                "space": "fbnet",
                "arch_index": np.arange(len(KEYS)),
                "arch_key": KEYS,
                "latency_ms": _latency(_table(mix), base=3.0 + i),
            }
        )
        for i, mix in enumerate(SOURCE_MIX)
    ]
    return pl.concat(parts)


@pytest.fixture(scope="module")
def model() -> FewShotLatencyRegressor:
    return FewShotLatencyRegressor(CONFIG).fit(_frame())


def test_source_cost_tables_recover_each_source_devices_lookup_table(model: FewShotLatencyRegressor) -> None:
    sm = model.spaces_["fbnet"]
    W = sm.table_components["ms"]  # (n_src, n_table) costs in standardized units of each device
    assert W.shape[0] == len(SOURCE_MIX) and sm.table.sum() == W.shape[1] == archspaces.FBNET_N_LAYERS * N_OPS
    # the fitted weights of a device are its table up to scale, per layer up to an offset
    cols = np.flatnonzero(sm.table)
    F = model.features("fbnet", KEYS)[:, cols]
    for i, mix in enumerate(SOURCE_MIX):
        truth = _latency(_table(mix))
        fit = F @ W[i]
        assert np.corrcoef(fit, truth)[0, 1] > 0.999, i


def test_table_component_prices_an_unseen_device_from_20_measurements(model: FewShotLatencyRegressor) -> None:
    truth = _latency(_table(TARGET_MIX), base=7.0)
    sup = np.random.default_rng(3).choice(len(KEYS), size=20, replace=False)
    keys = [KEYS[i] for i in sup]
    without = copy.copy(model)
    without.config = replace(model.config, table_component=())
    rho_with = score_predictions(truth, model.predict(model.adapt("fbnet", keys, truth[sup]), KEYS))[
        "spearman"
    ]
    rho_without = score_predictions(truth, without.predict(without.adapt("fbnet", keys, truth[sup]), KEYS))[
        "spearman"
    ]
    assert rho_with > 0.99 and rho_with > rho_without + 0.005, (rho_with, rho_without)


def test_table_component_survives_save_and_load(model: FewShotLatencyRegressor, tmp_path) -> None:
    truth = _latency(_table(TARGET_MIX), base=7.0)
    keys = KEYS[:20]
    model.save(tmp_path / "m.npz")
    loaded = FewShotLatencyRegressor.load(tmp_path / "m.npz")
    assert loaded.config.table_component == ("fbnet",)
    np.testing.assert_allclose(
        loaded.predict(loaded.adapt("fbnet", keys, truth[:20]), KEYS),
        model.predict(model.adapt("fbnet", keys, truth[:20]), KEYS),
        rtol=1e-6,
    )


def test_table_component_rejects_an_unknown_space() -> None:
    with pytest.raises(ValueError, match="table_component"):
        FewShotConfig(table_component=("mobilenet",))


def test_physical_vectors_add_up_to_the_layer_macs() -> None:
    from hwsurrogate.surrogates.features.nas import _fbnet_mmacs, fbnet_op_codes
    from hwsurrogate.surrogates.fewshot import physical_vectors

    keys = KEYS[:50] + [" ".join(["skip"] * archspaces.FBNET_N_LAYERS)]
    phys = physical_vectors("fbnet", keys)
    macs = _fbnet_mmacs(fbnet_op_codes(keys)).sum(axis=1) * 1e6
    # expand + depthwise + project MACs of the convs, plus the projecting skips' MACs
    np.testing.assert_allclose(phys[:, 1] + phys[:, 2] + phys[:, 3] + phys[:, 9], macs, rtol=1e-9)
    codes = fbnet_op_codes(keys)
    np.testing.assert_array_equal(phys[:, 0], (codes != N_OPS - 1).sum(axis=1))  # conv layers
    assert phys[-1, 0] == 0 and phys[-1, 9] > 0  # all-skip: no conv, but projecting skips


def test_physical_vectors_reject_a_space_without_layer_shapes() -> None:
    from hwsurrogate.surrogates.fewshot import FewShotError, physical_vectors

    with pytest.raises(FewShotError, match="physical features"):
        physical_vectors("nb201", ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"])
    with pytest.raises(ValueError, match="physical_features"):
        FewShotConfig(physical_features=("nb201",))


def test_table_source_block_is_each_sources_lookup_table_also_outside_the_table() -> None:
    cfg = replace(CONFIG, source_transforms=("log", "table"), physical_features=("fbnet",))
    m = FewShotLatencyRegressor(cfg).fit(_frame().filter(pl.col("arch_index") < 300))
    sm = m.spaces_["fbnet"]
    n = len(SOURCE_MIX)
    outside = KEYS[300:]  # not in the training table: encoded from the stored cost tables
    for keys in (KEYS[:300], outside):
        F = m.features("fbnet", keys)
        block = F[:, n : 2 * n] * sm.zt_std[0] + sm.zt_mean[0]  # the "table" block back in ms
        idx = [KEYS.index(k) for k in keys]
        for i, mix in enumerate(SOURCE_MIX):
            np.testing.assert_allclose(block[:, i], _latency(_table(mix), base=3.0 + i)[idx], rtol=0.02)
    truth = _latency(_table(TARGET_MIX), base=7.0)
    pred = m.predict(m.adapt("fbnet", KEYS[:20], truth[:20]), outside)
    assert score_predictions(truth[300:], pred)["spearman"] > 0.97


def test_span_component_recovers_a_device_whose_table_mixes_the_source_tables(tmp_path) -> None:
    """The target's table is a (extrapolated) mix of the sources' tables: the span model is exact."""
    cfg = replace(CONFIG, span_component=("fbnet",), table_component=())
    m = FewShotLatencyRegressor(cfg).fit(_frame())
    sm = m.spaces_["fbnet"]
    assert "table" in sm.source_transforms and set(sm.span_components) == set(cfg.transforms)
    W = sm.span_components["ms"]
    np.testing.assert_array_equal(np.diag(W), 0.0)  # a source never explains itself
    truth = _latency(_table(TARGET_MIX), base=7.0)
    sup = np.random.default_rng(3).choice(len(KEYS), size=20, replace=False)
    keys = [KEYS[i] for i in sup]
    without = copy.copy(m)
    without.config = replace(cfg, span_component=())
    rho_with = score_predictions(truth, m.predict(m.adapt("fbnet", keys, truth[sup]), KEYS))["spearman"]
    rho_without = score_predictions(truth, without.predict(without.adapt("fbnet", keys, truth[sup]), KEYS))[
        "spearman"
    ]
    assert rho_with > 0.995 and rho_with > rho_without + 0.01, (rho_with, rho_without)
    m.save(tmp_path / "span.npz")  # the span prior and the source tables survive a round trip
    loaded = FewShotLatencyRegressor.load(tmp_path / "span.npz")
    np.testing.assert_allclose(
        loaded.predict(loaded.adapt("fbnet", keys, truth[sup]), KEYS[::7]),
        m.predict(m.adapt("fbnet", keys, truth[sup]), KEYS[::7]),
        rtol=1e-6,
    )
