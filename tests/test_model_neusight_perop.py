"""``perop_breakdown``: the per-op-type error of ``hws bench model-neusight`` by GPU, mode and phase."""

from __future__ import annotations

import polars as pl
import pytest

from hwsurrogate.benchmarks.model_neusight import perop_breakdown


def test_perop_breakdown_splits_the_error_by_gpu_mode_and_phase() -> None:
    rows = [
        # two training configurations of one GPU: forward 1.0x, backward 0.5x (config a) / 1.0x (b)
        ("g1", "a", "training", "softmax", "forward", 1.0, 1.0, True),
        ("g1", "a", "training", "softmax", "backward", 3.0, 1.5, True),
        ("g1", "b", "training", "softmax", "forward", 2.0, 2.0, True),
        ("g1", "b", "training", "softmax", "backward", 2.0, 2.0, True),
        # an inference configuration of another GPU, 20 % over
        ("g2", "c", "inference", "softmax", "forward", 1.0, 1.2, True),
        # not counted: another kind, and an in-distribution configuration
        ("g2", "c", "inference", "layernorm", "forward", 1.0, 9.0, True),
        ("g2", "d", "inference", "softmax", "forward", 1.0, 9.0, False),
    ]
    frame = pl.DataFrame(rows, orient="row", schema=["gpu", "config", "mode", "op_kind", "phase", "measured_ms",
                                                     "pred_ms", "ood"])  # fmt: skip
    got = {(r["gpu"], r["mode"]): r for r in perop_breakdown(frame, ("softmax",)).iter_rows(named=True)}
    assert set(got) == {("g1", "training"), ("g2", "inference")}
    g1 = got[("g1", "training")]
    # config a: |2.5 / 4 - 1| = 37.5 %, config b: 0 %
    assert g1["configs"] == 2 and g1["err_pct"] == pytest.approx(18.75)
    assert g1["forward_pred_over_measured"] == pytest.approx(1.0)
    assert g1["backward_pred_over_measured"] == pytest.approx(3.5 / 5.0)
    assert g1["backward_share_pct"] == pytest.approx(5.0 / 8.0 * 100)
    g2 = got[("g2", "inference")]
    assert g2["configs"] == 1 and g2["err_pct"] == pytest.approx(20.0) and g2["backward_share_pct"] == 0.0
