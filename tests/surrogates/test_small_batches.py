"""Small merged batches (issue 18): the Python paths for frames of up to 64 rows give exactly the
answers of the column (polars/pandas/numpy) paths, on random queries with out-of-domain values,
unknown devices, nulls, NaN and column types the Python paths hand back to the column paths."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from hwsurrogate.surrogates import domain as domain_mod
from hwsurrogate.surrogates.domain import domain_issues, record_domain
from hwsurrogate.surrogates.features import gemm as features
from hwsurrogate.surrogates.features.gemm import GEMM_DTYPE_SPECS, GEMM_OP_CODES
from hwsurrogate.surrogates.models import gemm_serving
from hwsurrogate.surrogates.models.gemm_serving import output_frame
from hwsurrogate.surrogates.predict import Answer, Dispatch

from .gemm_factories import fitted_gemm_pyfunc, gemm_rows

#: every "up to this many rows" switch of the merged GEMM path; 0 sends every frame down the column path
SWITCHES = (
    (domain_mod, "FEW_DOMAIN_ROWS"),
    (features, "FEW_QUERY_ROWS"),
    (features, "FEW_LOOKUP_VALUES"),
    (features, "SCALAR_QUERY_ROWS"),
    (gemm_serving, "FEW_OUTPUT_ROWS"),
)


def _columns_only(m: pytest.MonkeyPatch) -> None:
    for module, name in SWITCHES:
        m.setattr(module, name, 0)


def _queries(rng: np.random.Generator, n: int, devices: list[str | None]) -> pl.DataFrame:
    """``n`` random GEMM queries: mostly inside the test model's domain (gpu-a, gemm, fp32, dims
    16..2048), some outside it (other ops/dtypes, dims up to 2**20), some on other devices."""

    def pick(options: list, odd: list, p_odd: float) -> list:
        return [
            odd[int(rng.integers(len(odd)))]
            if rng.random() < p_odd
            else options[int(rng.integers(len(options)))]
            for _ in range(n)
        ]

    dims = [16, 64, 96, 512, 2048]
    return pl.DataFrame(
        {
            "device_id": pick(["test/gpu-a"], devices, 0.1),
            "op": pick(["gemm"], sorted(GEMM_OP_CODES), 0.1),
            "m": pick(dims, [1, 3, 5000, 2**20], 0.15),
            "n": pick(dims, [8, 100_000], 0.05),
            "k": pick(dims, [7, 65536], 0.05),
            "batch": pick([1, 2, 3], [8, 64], 0.05),
            "dtype": pick(["fp32"], sorted(GEMM_DTYPE_SPECS), 0.1),
            "layout": pick(["nn"], ["nt", "tn", None], 0.1),
        },
        schema_overrides={"m": pl.Int64, "n": pl.Int64, "k": pl.Int64, "batch": pl.Int64},
    )


# ----------------------------------------------------------------------------- domain check
def _domains() -> list[dict]:
    """A per-device GEMM domain (gpu-a and gpu-b), a one-region one, and an FPGA one (precision_bits)."""
    rows = pl.concat([gemm_rows("test/gpu-a", 40, seed=1), gemm_rows("test/gpu-b", 30, seed=2)])
    rows = rows.with_columns(pl.Series("op", ["gemm", "bmm"] * 35))
    fpga = pl.DataFrame(
        {"part": ["xcu250", "xcu250", "pynq-z2"], "strategy": ["Latency", "Resource", "Latency"],
         "io_type": ["io_parallel"] * 3, "precision": ["ap_fixed<16,6>", "ap_fixed<8,3>", None],
         "reuse_factor": [1, 4, 16]}
    )  # fmt: skip
    return [
        record_domain("gemm", rows),
        {"task": "gemm", "regions": {"*": {"m": {"min": 1.5, "max": 1e3}, "dtype": {"values": []}}}},
        record_domain("fpga-hls4ml", fpga),
    ]


def _odd_frame(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """GEMM queries with nulls, NaN/inf dims, unknown and null devices, and (in some frames)
    columns whose values polars casts: float dims, text dims, categoricals, booleans."""
    frame = _queries(rng, n, ["test/gpu-b", "test/gpu-new", None])
    nulls = rng.random(n) < 0.1
    odd_m = rng.choice([math.nan, math.inf, -math.inf, 0.5, 2.0**60], n)
    frame = frame.with_columns(
        pl.when(pl.Series(nulls)).then(None).otherwise(pl.col("op")).alias("op"),
        pl.when(pl.Series(rng.random(n) < 0.15)).then(pl.Series(odd_m)).otherwise(pl.col("m")).alias("m"),
    )
    kind = int(rng.integers(6))
    if kind == 1:
        frame = frame.with_columns(pl.col("k").cast(pl.String))
    elif kind == 2:
        frame = frame.with_columns(
            pl.col("dtype").cast(pl.Categorical), pl.col("device_id").cast(pl.Categorical)
        )
    elif kind == 3:
        frame = frame.with_columns(pl.Series("batch", rng.random(n) < 0.5))
    elif kind == 4:
        frame = frame.drop("batch")
    return frame


def _fpga_frame(rng: np.random.Generator, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "part": rng.choice(["xcu250", "pynq-z2", "vu9p"], n).tolist(),
            "strategy": rng.choice(["Latency", "Resource"], n).tolist(),
            "precision": rng.choice(
                ["ap_fixed<16,6>", "ap_fixed<32,8>", "ap_fixed<4,2>", "junk"], n
            ).tolist(),
            "reuse_factor": rng.choice([1, 4, 64], n),
        }
    )


def test_domain_issues_of_a_few_rows_equal_the_polars_query(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(18)
    gemm_by_device, gemm_one_region, fpga = _domains()
    compared = outside = 0
    for trial in range(240):
        n = int(rng.integers(1, domain_mod.FEW_DOMAIN_ROWS + 1))
        if trial % 3 == 2:
            domain, frame = fpga, _fpga_frame(rng, n)
        else:
            domain, frame = (gemm_by_device if trial % 3 == 0 else gemm_one_region), _odd_frame(rng, n)
        fast = domain_issues(domain, frame)
        with monkeypatch.context() as m:
            m.setattr(domain_mod, "FEW_DOMAIN_ROWS", 0)
            slow = domain_issues(domain, frame)
        assert fast == slow, frame
        compared += 1
        outside += sum(bool(reasons) for reasons in slow)
    assert compared == 240 and outside > 1000  # the messages were compared, not only empty lists


def test_a_nan_bound_is_left_to_polars() -> None:
    """A domain with a NaN bound (never recorded, but JSON can carry one) is judged by polars'
    ordering of NaN, on either path."""
    domain = {"task": "gemm", "regions": {"*": {"m": {"min": 1.0, "max": math.nan}}}}
    q = pl.DataFrame({"m": [5.0, math.nan]})
    assert domain_issues(domain, q) == domain_issues(domain, pl.concat([q] * 40))[:2]


# ----------------------------------------------------------------------------- GEMM features and outputs
def _features_or_error(frame: pl.DataFrame, index: features.DeviceIndex) -> object:
    try:
        return dict(features.gemm_feature_arrays(features.gemm_query_arrays(frame), index))
    except ValueError as exc:  # a bad value or an unknown device, named
        return f"{type(exc).__name__}: {exc}"


def test_features_of_up_to_64_queries_equal_the_column_paths_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Query arrays read as Python lists and codes looked up in dicts give the column paths'
    features (every column, the same bits) and the same errors."""
    from .gemm_factories import devices_frame

    index = features.DeviceIndex(devices_frame())
    rng = np.random.default_rng(5)
    same = errors = 0
    for trial in range(150):
        n = int(rng.integers(9, 65))
        if trial % 3 == 0:  # nulls, NaN, unknown devices: mostly errors
            frame = _odd_frame(rng, n).with_columns(pl.col("device_id").cast(pl.String))
        else:  # valid queries, some columns of other types
            frame = _queries(rng, n, ["test/gpu-b"] * 20 + ["nope/gpu"])
            cast = [pl.col("m").cast(pl.Float64), pl.col("op").cast(pl.Categorical), pl.col("layout")]
            frame = frame.with_columns(cast[int(rng.integers(3))])
        fast = _features_or_error(frame, index)
        with monkeypatch.context() as m:
            _columns_only(m)
            slow = _features_or_error(frame, index)
        if isinstance(slow, str):
            assert fast == slow
            errors += 1
            continue
        assert isinstance(fast, dict) and list(fast) == list(slow)
        for col in slow:
            a, b = fast[col], slow[col]
            assert ((a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))).all(), col
        same += 1
    assert same > 30 and errors > 30


def test_small_output_frames_equal_the_column_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    schema = {"runtime_ms": pl.Float64, "power_w": pl.Float64, "energy_j": pl.Float64}
    for n in (1, 8, 9, 22, 24, 25, 64):
        runtime = rng.lognormal(0, 2, n)
        power = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(50, 300, n))
        fast = (output_frame(runtime, power), output_frame(runtime, power * 0 + 1))
        with monkeypatch.context() as m:
            _columns_only(m)
            slow = (output_frame(runtime, power), output_frame(runtime, power * 0 + 1))
        assert fast[0].equals(slow[0]) and fast[1].equals(slow[1])
        assert fast[0].schema == slow[0].schema == schema
        assert fast[0]["power_w"].null_count() == int(np.isnan(power).sum())


@pytest.fixture(scope="module")
def gemm_model():  # noqa: ANN201 - a fitted GemmPyfunc (runtime + power) on test/gpu-a
    return fitted_gemm_pyfunc(max_iter=15)[0]


class _Served:
    """A served predictor around a native model (what ``load_predictor`` returns, minus MLflow)."""

    def __init__(self, native: object) -> None:
        self.task, self.native, self.name, self.version, self.metrics = "gemm", native, "hws-gemm", "3", {}

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        return self.native.predict_frame(queries)  # type: ignore[attr-defined]


def _outcomes(got: list[Answer | Exception]) -> list[object]:
    return [
        (type(a).__name__, str(a))
        if isinstance(a, Exception)
        else (a.outputs.to_dict(as_series=False), a.predictor, a.models, a.warnings, a.in_domain)
        for a in got
    ]


@pytest.mark.parametrize("strict", [False, True])
def test_merged_batches_of_up_to_64_rows_answer_as_the_column_paths(
    gemm_model: object, monkeypatch: pytest.MonkeyPatch, strict: bool
) -> None:
    """``predict_many`` of 1-64 one- to three-row parts, with out-of-domain values and devices the
    model was not trained on (merged call refused: each part alone), equals the column paths'
    answers: outputs to 1e-12, warnings, ``in_domain`` flags and errors exactly."""
    rng = np.random.default_rng(64)
    dispatch = Dispatch(lambda task: _Served(gemm_model))  # type: ignore[arg-type,return-value]
    warned = refused = 0
    for _ in range(40):
        sizes = [int(s) for s in rng.integers(1, 4, int(rng.integers(1, 30)))]
        while sum(sizes) > 64:
            sizes.pop()
        frame = _queries(
            rng, sum(sizes), ["test/gpu-b", "nope/gpu"] if rng.random() < 0.3 else ["test/gpu-a"]
        )
        fast = dispatch.predict_many("gemm", frame, sizes, strict=strict)
        with monkeypatch.context() as m:
            _columns_only(m)
            slow = dispatch.predict_many("gemm", frame, sizes, strict=strict)
        for a, b in zip(_outcomes(fast), _outcomes(slow), strict=True):
            if isinstance(a[0], str):
                assert a == b
                refused += 1
                continue
            assert a[1:] == b[1:]
            warned += bool(a[3])
            assert a[0].keys() == b[0].keys()
            for col in a[0]:
                x = np.array(a[0][col], dtype=np.float64)
                y = np.array(b[0][col], dtype=np.float64)
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, equal_nan=True)
                assert [v is None for v in a[0][col]] == [v is None for v in b[0][col]]
    assert warned + refused > 40 and refused > 5
