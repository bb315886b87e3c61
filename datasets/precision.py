"""hls4ml's fixed-point types, parsed in one place.

The grammar (hls4ml writes the Vivado/Vitis HLS ``ap_*`` types; its own configuration may drop
the ``ap_`` prefix)::

    ap_fixed<W,I[,Q[,O[,N]]]>     signed, W bits of which I integer bits (I may be <= 0 or > W),
                                  optional quantization / overflow mode and saturation bits
    ap_ufixed<W,I[,Q[,O[,N]]]>    unsigned
    ap_int<W>  /  ap_uint<W>      integers: I = W
    fixed<..>, ufixed<..>, int<..>, uint<..>   the same without the prefix

Spaces are allowed around every token. Anything else (``auto``, ``float32``, a dict, ``None``)
is not a precision: :func:`parse_precision` returns None and each caller decides what that
means (an importer leaves the bits empty, the RTL generator refuses the value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FixedPoint", "parse_precision"]

_FIXED_RE = re.compile(r"^\s*(?:ap_)?(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,([^>]*))?>\s*$")
_INT_RE = re.compile(r"^\s*(?:ap_)?(u?)int\s*<\s*(\d+)\s*>\s*$")


@dataclass(frozen=True)
class FixedPoint:
    """``ap_fixed<width, integer>``: ``width`` bits, ``integer`` of them left of the binary point."""

    width: int
    integer: int
    signed: bool = True
    #: quantization / overflow mode and saturation bits as written (``("AP_RND", "AP_SAT")``); () = defaults
    modes: tuple[str, ...] = ()

    @property
    def frac(self) -> int:
        return self.width - self.integer

    def __str__(self) -> str:
        u = "" if self.signed else "u"
        if self.integer == self.width and not self.modes:
            return f"ap_{u}int<{self.width}>"
        return f"ap_{u}fixed<{','.join(map(str, (self.width, self.integer, *self.modes)))}>"


def parse_precision(text: object) -> FixedPoint | None:
    """The :class:`FixedPoint` a type string names (see the module grammar); None for anything else."""
    if not isinstance(text, str):
        return None
    if m := _FIXED_RE.match(text):
        modes = tuple(p.strip() for p in m.group(4).split(",")) if m.group(4) is not None else ()
        return FixedPoint(int(m.group(2)), int(m.group(3)), signed=not m.group(1), modes=modes)
    if m := _INT_RE.match(text):
        return FixedPoint(int(m.group(2)), int(m.group(2)), signed=not m.group(1))
    return None
