"""hls4ml's fixed-point grammar, parsed once (datasets/precision.py), and the callers that used to have their own."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hwsurrogate.datasets.collectors.fpga import _add_weight_precision
from hwsurrogate.datasets.importers import wa_hls4ml
from hwsurrogate.datasets.precision import FixedPoint, parse_precision
from hwsurrogate.surrogates import features

#: (type string, (W, I) or None when it is not a precision)
CASES: list[tuple[Any, tuple[int, int] | None]] = [
    ("ap_fixed<16,6>", (16, 6)),
    ("fixed<8, 3>", (8, 3)),
    (" ap_fixed< 18 , 8 > ", (18, 8)),
    ("ap_ufixed<8,1>", (8, 1)),
    ("ufixed<8,1,RND_CONV,SAT,0>", (8, 1)),
    ("ap_fixed<18,8,AP_RND,AP_SAT>", (18, 8)),
    ("ap_fixed<40,3>", (40, 3)),
    ("ap_fixed<8,0>", (8, 0)),
    ("ap_fixed<8,-2>", (8, -2)),
    ("ap_int<8>", (8, 8)),
    ("ap_uint<4>", (4, 4)),
    ("int<6>", (6, 6)),
    ("uint<6>", (6, 6)),
    ("auto", None),
    ("float32", None),
    ("", None),
    ("8", None),
    ("ap_fixed<8>", None),
    (None, None),
    (16, None),
]


@pytest.mark.parametrize(("text", "bits"), CASES)
def test_grammar(text: Any, bits: tuple[int, int] | None) -> None:
    fp = parse_precision(text)
    assert (None if fp is None else (fp.width, fp.integer)) == bits


def test_sign_and_modes_are_kept_and_printed_back() -> None:
    assert parse_precision("ufixed<8,1,RND_CONV,SAT,0>") == FixedPoint(8, 1, False, ("RND_CONV", "SAT", "0"))
    assert parse_precision("ap_uint<4>") == FixedPoint(4, 4, signed=False)
    for text in ("ap_fixed<16,6>", "ap_ufixed<8,1>", "ap_int<8>", "ap_uint<4>", "ap_fixed<18,8,AP_RND,AP_SAT>"):
        assert str(parse_precision(text)) == text


def _collector_bits(text: Any) -> tuple[int, int] | None:
    layers: list[dict[str, Any]] = [{"class_name": "Dense"}]
    _add_weight_precision(layers, text)
    return (layers[0]["weight_bits"], layers[0]["weight_int_bits"]) if "weight_bits" in layers[0] else None


def _features_bits(text: Any) -> tuple[int, int] | None:
    w, i = features.parse_precision(text)
    return None if math.isnan(w) else (int(w), int(i))


@pytest.mark.parametrize(("text", "bits"), CASES)
def test_former_parsers_accept_and_reject_the_same_strings(text: Any, bits: tuple[int, int] | None) -> None:
    """The wa-hls4ml importer, the FPGA report collector (ufixed used to be dropped there) and the
    hls4ml features read every type string alike."""
    assert wa_hls4ml.parse_precision(text) == bits
    assert _collector_bits(text) == bits
    assert _features_bits(text) == bits
