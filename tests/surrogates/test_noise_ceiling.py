"""The NB201 noise ceiling: class means by op counts, and the positional test that backs it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwsurrogate.surrogates.training.noise_ceiling import (
    loo_class_mean,
    nb201_noise_ceiling,
    op_count_classes,
)

ALL_CODES = np.array(list(itertools.product(range(5), repeat=6)))  # the 15,625 NB201 cells
SOME = np.random.default_rng(1).choice(len(ALL_CODES), 3000, replace=False)  # keeps the CV tree fast
OP_COST = np.array([0.0, 0.1, 2.0, 1.0, 0.5])  # none, skip, conv3x3, conv1x1, avgpool (any order)


def test_op_count_classes_group_the_nb201_space_into_210_multisets() -> None:
    classes = op_count_classes(ALL_CODES)
    assert classes.max() + 1 == 210
    # same counts in another order -> same class; different counts -> different class
    a, b, c = op_count_classes(np.array([[0, 1, 2, 3, 4, 4], [4, 4, 3, 2, 1, 0], [0, 0, 2, 3, 4, 4]]))
    assert a == b != c


def test_loo_class_mean_leaves_each_row_out_and_ignores_nan() -> None:
    y = np.array([1.0, 2.0, 6.0, np.nan, 5.0])
    cls = np.array([0, 0, 0, 0, 1])
    out = loo_class_mean(y, cls)
    np.testing.assert_allclose(out[:4], [4.0, 3.5, 1.5, 3.0])
    assert np.isnan(out[4])  # alone in its class


def test_position_free_noise_is_recognised_and_caps_the_oracle() -> None:
    rng = np.random.default_rng(0)
    codes = ALL_CODES[SOME]
    clean = np.exp(OP_COST[codes].sum(axis=1) / 4)
    noisy = clean * np.exp(rng.normal(0, 0.05, len(clean)))
    test = np.arange(900, 1700)
    c = nb201_noise_ceiling(noisy, codes, test, "test/noise")
    assert c.position_cv_r2 < 0.02  # positions cannot predict noise (a fitted tree only overfits it)
    assert c.residual_sd == pytest.approx(0.05, rel=0.1)
    assert 0.5 < c.spearman < 0.999  # the noise costs rank correlation even for the oracle
    exact = nb201_noise_ceiling(clean, codes, test, "test/clean", with_positions=False)
    assert exact.spearman > c.spearman and exact.mape < 1e-9


def test_a_device_whose_latency_depends_on_positions_is_not_called_noise() -> None:
    edge_weight = np.array([1.0, 3.0, 0.2, 1.5, 0.1, 2.5])  # the op on edge e costs w_e times more
    codes = ALL_CODES[SOME]
    y = np.exp((OP_COST[codes] * edge_weight).sum(axis=1) / 6)
    c = nb201_noise_ceiling(y, codes, np.arange(900, 1700), "test/positional")
    assert c.position_cv_r2 > 0.5


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match="codes"):
        op_count_classes(np.zeros((3, 5), dtype=int))
    with pytest.raises(ValueError, match="latency_ms"):
        nb201_noise_ceiling(np.ones(10), ALL_CODES, np.arange(5), "test/x")
    with pytest.raises(ValueError, match="non-positive"):
        nb201_noise_ceiling(-np.ones(len(ALL_CODES)), ALL_CODES, np.arange(5), "test/x")
