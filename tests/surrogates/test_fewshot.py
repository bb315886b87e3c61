"""Few-shot latency adaptation on a tiny synthetic multi-device problem with a known answer.

Every synthetic device's log-latency is a known linear function of the live op counts of an
NB201 cell: ``log y = b_d + sum_op c_d[op] * n_live_op``, with ``c_d`` a device-specific mix of
a compute-bound and a memory-bound cost profile. Source devices mix both; the target device is
purely memory-bound, so the average source device ranks its architectures badly and only
adaptation can recover the order.
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
from hwsurrogate.errors import UnknownDeviceError
from hwsurrogate.surrogates.features.nas import arch_vectors, vector_feature_names
from hwsurrogate.surrogates.fewshot import (
    FewShotConfig,
    FewShotError,
    FewShotLatencyRegressor,
    check_measurements,
    qualify_device,
    read_splits,
    score_predictions,
)
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry

torch.set_num_threads(1)

COMPUTE = np.array([0.0, 0.02, 0.10, 0.30, 0.03])  # none, skip, conv1x1, conv3x3, avgpool
MEMORY = np.array([0.0, 0.12, 0.04, 0.06, 0.25])
SOURCE_MIX = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)  # share of the compute profile
TARGET_MIX = 0.0
#: these tests pin the Bayesian linear model alone; the GNN embedding has tests/surrogates/test_fewshot_gnn.py
NO_GNN: tuple[str, ...] = ()


def _keys(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 5, size=(n * 2, 6))
    keys = list(dict.fromkeys(archspaces.nb201_from_codes(c) for c in codes))
    return keys[:n]


def _live_counts(keys: list[str]) -> np.ndarray:
    names = vector_feature_names("nb201")
    cols = [names.index(f"n_live_{op}") for op in archspaces.NB201_OPS]
    return arch_vectors("nb201", keys)[:, cols].astype(float)


def _latency(keys: list[str], mix: float, base: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    costs = mix * COMPUTE + (1 - mix) * MEMORY
    log_y = base + _live_counts(keys) @ costs
    log_y += np.random.default_rng(seed).normal(0, noise, len(keys))
    return np.exp(log_y)


def _frame(keys: list[str], device: str, latency: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": device,
            "space": "nb201",
            "arch_index": np.arange(len(keys)),
            "arch_key": keys,
            "latency_ms": latency,
        }
    )


KEYS = _keys(300, seed=0)


def _training_frame() -> pl.DataFrame:
    return pl.concat(
        [
            _frame(KEYS, f"synth/src{i}", _latency(KEYS, mix, base=0.5 + 0.3 * i, noise=0.01, seed=i))
            for i, mix in enumerate(SOURCE_MIX)
        ]
    )


@pytest.fixture(scope="module")
def model() -> FewShotLatencyRegressor:
    cfg = FewShotConfig(
        meta_draws=2, meta_query=200, tau_grid=(0.001, 0.01), noise_grid=(0.05, 0.2), gnn=NO_GNN
    )
    return FewShotLatencyRegressor(cfg).fit(_training_frame())


def _support(n: int = 10, seed: int = 1) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(KEYS), size=n, replace=False)
    keys = [KEYS[i] for i in idx]
    return keys, _latency(keys, TARGET_MIX, base=1.2)


def _measurements(keys: list[str], latency: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"space": "nb201", "arch_key": keys, "latency_ms": latency})


def test_adaptation_beats_the_unadapted_average_source_device(model: FewShotLatencyRegressor) -> None:
    keys, y = _support(10)
    truth = _latency(KEYS, TARGET_MIX, base=1.2)
    adapted = model.predict(model.adapt("nb201", keys, y), KEYS)
    unadapted = np.exp(
        np.log(_training_frame()["latency_ms"].to_numpy()).reshape(len(SOURCE_MIX), -1).mean(0)
    )
    rho_adapted = score_predictions(truth, adapted)["spearman"]
    rho_unadapted = score_predictions(truth, unadapted)["spearman"]
    assert rho_adapted > 0.95
    assert rho_adapted > rho_unadapted + 0.15


def test_adapted_absolute_latency_matches_the_known_function(model: FewShotLatencyRegressor) -> None:
    keys, y = _support(10)
    truth = _latency(KEYS, TARGET_MIX, base=1.2)
    scores = score_predictions(truth, model.predict(model.adapt("nb201", keys, y), KEYS))
    assert scores["mape"] < 5.0
    assert scores["within_10pct"] > 0.9


def test_adaptation_is_closed_form_and_repeatable(model: FewShotLatencyRegressor) -> None:
    # speed is a benchmark figure (`hws bench fewshot-help` reports adapt_ms), not a unit test
    keys, y = _support(20)
    first = model.predict(model.adapt("nb201", keys, y), KEYS)
    again = model.predict(model.adapt("nb201", keys, y), KEYS)
    np.testing.assert_array_equal(first, again)


def test_arch_outside_the_table_is_predicted_through_the_encoder(model: FewShotLatencyRegressor) -> None:
    outside = [k for k in _keys(600, seed=7) if k not in set(KEYS)][:50]
    keys, y = _support(20)
    pred = model.predict(model.adapt("nb201", keys, y), outside)
    truth = _latency(outside, TARGET_MIX, base=1.2)
    assert score_predictions(truth, pred)["spearman"] > 0.9


def test_saved_model_predicts_exactly_like_the_fitted_one(
    model: FewShotLatencyRegressor, tmp_path: Path
) -> None:
    model.save(tmp_path / "m.npz")
    loaded = FewShotLatencyRegressor.load(tmp_path / "m.npz")
    keys, y = _support(12)
    np.testing.assert_allclose(
        loaded.predict(loaded.adapt("nb201", keys, y), KEYS),
        model.predict(model.adapt("nb201", keys, y), KEYS),
    )
    assert loaded.spaces_["nb201"].source_devices == model.spaces_["nb201"].source_devices


@pytest.fixture
def registry(model: FewShotLatencyRegressor, tmp_path: Path) -> AdaptedDeviceRegistry:
    reg = AdaptedDeviceRegistry(tmp_path / "store")
    reg.export_model(model, "1", champion=True)
    return reg


def test_adapted_device_round_trips_through_a_fresh_registry(registry: AdaptedDeviceRegistry) -> None:
    keys, y = _support(15)
    dev = registry.adapt("phone/x1", _measurements(keys, y))
    fresh = AdaptedDeviceRegistry(registry.root)
    assert fresh.list() == ["phone/x1"]
    got = fresh.get("phone/x1")
    assert got.model_version == "1" and got.n_measurements == 15
    np.testing.assert_allclose(
        fresh.predict_latency("phone/x1", "nb201", KEYS[:40]),
        registry.load_model("1")[0].predict(dev.heads["nb201"], KEYS[:40]),
    )


def test_predicting_an_unknown_device_names_it(registry: AdaptedDeviceRegistry) -> None:
    with pytest.raises(UnknownDeviceError, match="nope"):
        registry.predict_latency("nope", "nb201", KEYS[:2])


def test_adapting_without_a_trained_model_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="hws train fewshot"):
        AdaptedDeviceRegistry(tmp_path).adapt("dev", _measurements(*_support(10)))


def _bad_cases() -> dict[str, tuple[pl.DataFrame, str]]:
    keys, y = _support(12)
    ok = _measurements(keys, y)
    nan = ok.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(float("nan"))
        .otherwise(pl.col("latency_ms"))
        .alias("latency_ms")
    )
    neg = ok.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(-1.0).otherwise(pl.col("latency_ms")).alias("latency_ms")
    )
    dup = pl.concat([ok, ok.head(1)])
    unknown = ok.with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("|conv~0|"))
        .otherwise(pl.col("arch_key"))
        .alias("arch_key")
    )
    return {
        "too_few": (ok.head(3), "too few measurements"),
        "nan": (nan, "latency_ms"),
        "negative": (neg, "latency_ms"),
        "duplicated": (dup, "repeat an architecture"),
        "unknown_arch": (unknown, "arch_key"),
        "missing_column": (ok.drop("latency_ms"), "latency_ms"),
        "bad_space": (ok.with_columns(pl.lit("resnet").alias("space")), "space"),
    }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_bad_measurements_raise_and_leave_registered_devices_byte_identical(
    registry: AdaptedDeviceRegistry, case: str
) -> None:
    registry.adapt("phone/x1", _measurements(*_support(15)))
    before = {p: p.read_bytes() for p in registry.root.rglob("*") if p.is_file()}
    frame, match = _bad_cases()[case]
    with pytest.raises(FewShotError, match=match):
        registry.adapt("phone/x1", frame)  # re-adapting a device with bad data must not touch it
    with pytest.raises(FewShotError, match=match):
        registry.adapt("phone/x2", frame)
    after = {p: p.read_bytes() for p in registry.root.rglob("*") if p.is_file()}
    assert after == before


def test_device_name_colliding_with_a_source_device_is_refused(registry: AdaptedDeviceRegistry) -> None:
    with pytest.raises(FewShotError, match="collides with a source device"):
        registry.adapt("synth/src0", _measurements(*_support(12)))
    assert registry.list() == []


def test_device_name_colliding_with_a_store_device_is_refused(registry: AdaptedDeviceRegistry) -> None:
    from hwsurrogate.datasets.store import DatasetStore

    keys = KEYS[:3]
    rows = _frame(keys, "local/box-cpu", np.ones(3)).with_columns(
        batch=pl.lit(1), precision=pl.lit("fp32"), measured=pl.lit(True), source=pl.lit("test"),
        origin=pl.lit("tests"), measurement_id=pl.Series([f"m{i}" for i in range(3)]),
    )  # fmt: skip
    DatasetStore(registry.root).append("latency", rows, partition="test")
    with pytest.raises(FewShotError, match="already in the store"):
        registry.adapt("local/box-cpu", _measurements(*_support(12)))
    with pytest.raises(FewShotError, match="device"):
        registry.adapt("../etc", _measurements(*_support(12)))
    assert registry.list() == []


def test_check_measurements_canonicalizes_keys() -> None:
    keys, y = _support(6)
    spaced = [f"  {k} " for k in keys]
    out = check_measurements(_measurements(spaced, y), min_per_space=5)
    assert out["arch_key"].to_list() == keys


def test_read_splits_qualifies_help_and_latbench_names(tmp_path: Path) -> None:
    raw = {
        "help": {
            "nasbench201": {
                "meta_train": ["pixel3"], "meta_valid": ["titanx_1"], "meta_test": ["eyeriss"],
                "num_meta_train_sample": 900,
            }
        },
        "nasflat": {"nb201": {"1": {"name_inferred": "N1", "train": ["embedded_tpu_edge_tpu_int8"], "test": ["pixel3"]}}},
    }  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps(raw))
    splits = read_splits(tmp_path / "s.json")
    assert splits["help-nb201"].valid == ("help/titanx_1",) and splits["help-nb201"].n_pool == 900
    assert splits["nb201-N1"].train == ("latbench/embedded_tpu_edge_tpu_int8",)
    assert qualify_device("mobile_cpu_x") == "latbench/mobile_cpu_x"


# --------------------------------------------------------------------------- latency transforms
def _additive_latency(keys: list[str], mix: float, scale: float) -> np.ndarray:
    """Latency = sum of per-op latencies (exactly linear in ms, not in log ms)."""
    costs = mix * COMPUTE + (1 - mix) * MEMORY
    return scale * (0.2 + _live_counts(keys) @ costs)


def test_an_additive_device_is_fitted_best_by_the_ms_head(model: FewShotLatencyRegressor) -> None:
    from hwsurrogate.surrogates.fewshot import predict_head

    frame = pl.concat(
        [
            _frame(KEYS, f"synth/add{i}", _additive_latency(KEYS, mix, 1 + i))
            for i, mix in enumerate(SOURCE_MIX)
        ]
    )
    cfg = FewShotConfig(
        gnn=NO_GNN,
        meta_draws=1, meta_query=100, tau_grid=(0.001, 0.01), noise_grid=(0.05,),
        use_arch_features=False, interaction_pcs=(), source_transforms=("log", "ms"),
    )  # fmt: skip
    additive = FewShotLatencyRegressor(cfg).fit(frame)
    keys, _ = _support(20)
    head = additive.adapt("nb201", keys, _additive_latency(keys, TARGET_MIX, 3.0))
    truth = _additive_latency(KEYS, TARGET_MIX, 3.0)
    F = additive.features("nb201", KEYS)
    mape = {
        c.transform: score_predictions(truth, np.exp(predict_head(c, F)))["mape"] for c in head.components
    }
    assert mape["ms"] < 1.5 and mape["ms"] < 0.5 * mape["log"]
    assert score_predictions(truth, additive.predict(head, KEYS))["spearman"] > 0.99


def test_transform_weights_do_not_depend_on_the_latency_unit(model: FewShotLatencyRegressor) -> None:
    # the Jacobian correction makes the transforms' evidences comparable: ms vs us must not matter
    keys, y = _support(20)
    y = y * (1 + 0.05 * np.random.default_rng(3).standard_normal(len(y)))
    ms = model.adapt("nb201", keys, y)
    us = model.adapt("nb201", keys, y * 1000)
    assert len(ms.components) == 3
    np.testing.assert_allclose(us.component_weights, ms.component_weights, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.predict(us, KEYS), 1000 * model.predict(ms, KEYS), rtol=1e-6)


def test_a_single_transform_model_returns_a_plain_head(tmp_path: Path) -> None:
    cfg = FewShotConfig(
        gnn=NO_GNN, meta_draws=1, meta_query=100, tau_grid=(0.01,), noise_grid=(0.1,), transforms=("log",)
    )
    m = FewShotLatencyRegressor(cfg).fit(_training_frame())
    head = m.adapt("nb201", *_support(12))
    assert head.transform == "log" and head.components == []
    m.save(tmp_path / "log.npz")
    assert FewShotLatencyRegressor.load(tmp_path / "log.npz").spaces_["nb201"].transform_components == {}


def test_adapted_head_json_from_before_transforms_still_predicts_in_log_space(
    model: FewShotLatencyRegressor,
) -> None:
    from hwsurrogate.surrogates.fewshot import DeviceHead

    head = model.adapt("nb201", *_support(12)).components[0]
    assert head.transform == "log"
    old = head.to_json()
    for key in ("transform", "components", "component_weights"):
        old.pop(key)
    np.testing.assert_allclose(model.predict(DeviceHead.from_json(old), KEYS), model.predict(head, KEYS))


@pytest.mark.parametrize(
    ("field", "value"), [("transforms", ("log", "cube")), ("source_transforms", ("exp",)), ("prior", "flat")]
)
def test_config_rejects_unknown_transforms_and_priors_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"FewShotConfig.{field}"):
        FewShotConfig(**{field: value})  # type: ignore[arg-type]


def test_ms_source_features_are_masked_per_device_and_survive_save_load(tmp_path: Path) -> None:
    cfg = FewShotConfig(
        gnn=NO_GNN,
        meta_draws=1,
        meta_query=100,
        tau_grid=(0.01,),
        noise_grid=(0.1,),
        source_transforms=("log", "ms"),
    )
    m = FewShotLatencyRegressor(cfg).fit(_training_frame())
    sm = m.spaces_["nb201"]
    n_dev = len(sm.source_devices)
    # each source device's prior weights ignore both of its own latency columns (log and ms)
    for j in range(n_dev):
        assert sm.prior_components[j, j] == 0.0 and sm.prior_components[j, n_dev + j] == 0.0
    m.save(tmp_path / "ms.npz")
    loaded = FewShotLatencyRegressor.load(tmp_path / "ms.npz")
    outside = [k for k in _keys(600, seed=7) if k not in set(KEYS)][:20]
    keys, y = _support(15)
    np.testing.assert_allclose(
        loaded.predict(loaded.adapt("nb201", keys, y), outside + KEYS[:5]),
        m.predict(m.adapt("nb201", keys, y), outside + KEYS[:5]),
    )


def test_edge_pair_features_encode_new_archs_like_table_archs_and_survive_save_load(tmp_path: Path) -> None:
    cfg = FewShotConfig(
        gnn=NO_GNN, meta_draws=1, meta_query=100, tau_grid=(0.01,), noise_grid=(0.1,), edge_pairs=("nb201",)
    )
    m = FewShotLatencyRegressor(cfg).fit(_training_frame())
    sm = m.spaces_["nb201"]
    assert (
        len(sm.pair_index) > 0
        and sm.n_features > FewShotLatencyRegressor().fit(_training_frame()).spaces_["nb201"].n_features
    )
    # a table arch re-encoded through the outside-the-table path gets the same pair columns
    n_pairs = len(sm.pair_index)
    sm_copy_rows = sm.design(KEYS[:5], use_z=True, use_x=True)[:, -n_pairs:]
    sm._index = {}  # pretend the table is empty: forces the encoder path
    encoded = sm.design(KEYS[:5], use_z=True, use_x=True)[:, -n_pairs:]
    sm._index = None
    np.testing.assert_allclose(encoded, sm_copy_rows, rtol=1e-5, atol=1e-5)
    m.save(tmp_path / "pairs.npz")
    loaded = FewShotLatencyRegressor.load(tmp_path / "pairs.npz")
    keys, y = _support(15)
    np.testing.assert_allclose(
        loaded.predict(loaded.adapt("nb201", keys, y), KEYS), m.predict(m.adapt("nb201", keys, y), KEYS)
    )


def test_op_count_component_fits_a_device_whose_ops_cost_alike_on_every_edge(
    model: FewShotLatencyRegressor,
) -> None:
    """A GPU-like device: every op costs the same on any edge (dead ones too), unlike the sources."""
    import copy

    counts = arch_vectors("nb201", KEYS)[
        :, [vector_feature_names("nb201").index(f"n_{op}") for op in archspaces.NB201_OPS]
    ]
    cost_ms = np.array([0.05, 0.1, 1.0, 3.0, 0.5])
    truth = 2.0 + counts @ cost_ms
    keys, _ = _support(20, seed=3)
    y = truth[[KEYS.index(k) for k in keys]]
    assert model.config.count_component  # the default
    without = copy.copy(model)
    without.config = replace(model.config, count_component=False)
    rho_with = score_predictions(truth, model.predict(model.adapt("nb201", keys, y), KEYS))["spearman"]
    rho_without = score_predictions(truth, without.predict(without.adapt("nb201", keys, y), KEYS))["spearman"]
    assert rho_with > 0.998 and rho_without < rho_with - 0.003  # measured: 0.9996 vs 0.9936


def test_posterior_with_more_measurements_than_features_matches_the_woodbury_form() -> None:
    """n > p takes the p-dimensional path; evidence, chosen tau and weights must equal the n-dim form."""
    from hwsurrogate.surrogates.fewshot.posterior import (
        _dual_terms,
        _loo_log_density,
        _primal_terms,
        posterior_head,
    )

    rng = np.random.default_rng(0)
    n, p = 60, 25
    F = rng.normal(size=(n, p))
    Fc = F - F.mean(axis=0)
    W = rng.normal(size=(4, p))
    S = np.cov(W.T)  # rank 3: singular, as the source-device covariance is
    d = np.r_[np.ones(20), np.zeros(5)]
    resid = rng.normal(size=(3, n))
    taus, noises = [0.01, 0.1, 1.0], [0.05, 0.2]
    ev_d, t_d, s2_d, af_d, ll_d = _dual_terms(Fc, resid, S, d, taus, noises)
    ev_p, t_p, s2_p, af_p, ll_p = _primal_terms(Fc, resid, S, d, taus, noises)
    assert (t_d, s2_d) == (t_p, s2_p)
    np.testing.assert_allclose([ev_p, *ll_p], [ev_d, *ll_d], rtol=1e-9)
    np.testing.assert_allclose(af_p, af_d, atol=1e-9)
    # posterior_head itself (n > p: the primal path) gives the dual form's weights
    y = F @ rng.normal(size=p) * 0.1 + rng.normal(0, 0.05, n)
    head = posterior_head(F, y, W[:1], S, tau=taus, noise=noises, iso=d)
    resid1 = ((y - y.mean()) / y.std())[None, :] - W[:1] @ Fc.T
    _, t1, s21, af1, _ = _dual_terms(Fc, resid1, S, d, taus, noises)
    np.testing.assert_allclose(head.weights, (W[:1] + af1 @ S + t1 * af1 * d)[0], atol=1e-9)
    # the leave-one-out density: the p-dim path (n > p) equals brute force (refit without point i)
    S0 = S + t1 * np.diag(d)
    K = Fc @ S0 @ Fc.T + s21 * np.eye(n)
    brute = 0.0
    for i in range(n):
        keep = np.arange(n) != i
        k_i = K[i, keep]
        sol = np.linalg.solve(K[np.ix_(keep, keep)], np.c_[resid1[0, keep], k_i])
        mu, var = k_i @ sol[:, 0], K[i, i] - k_i @ sol[:, 1]
        brute += -0.5 * np.log(2 * np.pi * var) - 0.5 * (resid1[0, i] - mu) ** 2 / var
    assert head.loo == pytest.approx(brute, rel=1e-8)
    assert (
        _loo_log_density(Fc[:20], resid1[0, :20], S0, s21)
        == pytest.approx(  # n <= p: the n-dim path
            _loo_log_density(Fc[:20], resid1[0, :20], S0, s21 * (1 + 1e-12)), rel=1e-6
        )
    )
