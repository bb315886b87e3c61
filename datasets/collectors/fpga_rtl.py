"""Verilog for one quantized dense layer in the style of hls4ml, for open-source synthesis.

The design computes ``y = act(W x + b)`` for ``d_in`` inputs and ``d_out`` outputs, all in one
fixed-point type ``ap_fixed<width, integer>`` (as hls4ml's ``Model: Precision``). The reuse
factor ``RF`` time-multiplexes the multipliers exactly like hls4ml's resource strategy:

* ``n_mult = ceil(d_in * d_out / RF)`` multipliers; in cycle ``r`` multiplier ``m`` computes
  product ``p = r + RF * m`` (input ``p % d_in``, output ``p // d_in``), so a counter drives an
  input mux and a weight mux (a constant ROM) in front of every multiplier;
* a registered, balanced adder tree per output sums the products of one cycle
  (``tree_depth = ceil(log2(max terms per output))`` levels), and an accumulator adds the
  ``RF`` partial sums to the bias;
* the result is ReLU'd (or passed) and truncated with wrap-around back to ``ap_fixed<width,
  integer>`` (hls4ml's default ``AP_TRN``/``AP_WRAP``).

**Weights are compile-time constants** (seeded random integers, bias too), as in an hls4ml
project, where weights are baked into the firmware. Synthesis therefore simplifies
multiplications by 0, +-1 and powers of two, and a product with a constant may be mapped to
LUTs instead of a DSP; resources depend on the weight values, which is why the seed is part of
the design id. With ``RF > 1`` a multiplier sees a different weight every cycle (a ROM output),
so it stays a real multiplier.

A Conv1D layer (:class:`Conv1DLayerSpec`) goes through the same generator as its im2col
matrix: only the structural non-zeros (``out_width * filters * kernel_size * channels``) become
products, in the same row-major order, with weights shared between output positions.

Timing of the schedule (exact by construction): a new input can be accepted every ``RF``
cycles (``ii = RF``) and ``done`` rises ``cycles = RF + tree_depth + 3`` clock edges after
``start`` was sampled (input register, product register, tree levels, accumulator, output
register).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwsurrogate.datasets.precision import FixedPoint, parse_precision
from hwsurrogate.errors import CollectorError

MAX_DIM = 4096  # inputs or outputs of one layer
MAX_PRODUCTS = 65536  # d_in * d_out: above this the RTL and yosys run take too long here
MAX_WIDTH = 32
MIN_WIDTH = 2

_BITS_RE = re.compile(r"^\s*(\d+)\s*(?:b|bit|bits)?\s*$")

Activation = Literal["relu", "linear"]


def layer_precision(text: str) -> FixedPoint:
    """The precision of a generated layer: an hls4ml type (:mod:`hwsurrogate.datasets.precision`) or a
    bare bit count ``8`` (= ``ap_int<8>``), within what the generator builds: signed, ``MIN_WIDTH`` to
    ``MAX_WIDTH`` bits, 1 to W integer bits.

    Raises :class:`CollectorError` naming the field ``precision`` for anything else.
    """
    raw = str(text)
    fp = parse_precision(raw)
    if fp is None and (m := _BITS_RE.match(raw)) is not None:
        fp = FixedPoint(int(m.group(1)), int(m.group(1)))
    if fp is None:
        raise CollectorError(
            f"precision {raw!r} is not understood; use ap_fixed<W,I>, ap_int<W> or a bit count W "
            f"({MIN_WIDTH} <= W <= {MAX_WIDTH})"
        )
    width, integer = fp.width, fp.integer
    if not fp.signed or fp.modes:
        raise CollectorError(
            f"precision {raw!r}: only signed types with the default modes (truncation, wrap-around) are generated"
        )
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise CollectorError(f"precision {raw!r}: width {width} must be in [{MIN_WIDTH}, {MAX_WIDTH}]")
    if not 1 <= integer <= width:
        raise CollectorError(
            f"precision {raw!r}: integer bits {integer} must be in [1, width={width}] "
            "(purely fractional types are not generated)"
        )
    return FixedPoint(width, integer)


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CollectorError(f"{name} must be an integer, got {value!r}")
    if value < lo:
        raise CollectorError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise CollectorError(f"{name} = {value} is larger than the supported {hi}")


def _check_common(spec: DenseLayerSpec | Conv1DLayerSpec, sizes: str) -> None:
    if spec.n_products > MAX_PRODUCTS:
        raise CollectorError(
            f"{sizes} = {spec.n_products} products is larger than the supported {MAX_PRODUCTS}"
        )
    _check_int("reuse_factor", spec.reuse_factor, -(2**62))
    if not 1 <= spec.reuse_factor <= spec.n_products:
        raise CollectorError(
            f"reuse_factor must be in [1, {sizes}={spec.n_products}], got {spec.reuse_factor}"
        )
    _check_int("seed", spec.seed, 0)
    if spec.activation not in ("relu", "linear"):
        raise CollectorError(f"activation must be 'relu' or 'linear', got {spec.activation!r}")
    if not isinstance(spec.precision, FixedPoint):
        raise CollectorError(f"precision must be a FixedPoint, got {spec.precision!r}")


def _precision_fields(p: FixedPoint) -> dict[str, object]:
    return {"weight_precision": str(p), "weight_bits": p.width, "weight_int_bits": p.integer}


def _random_ints(rng: np.random.Generator, width: int, size: int | tuple[int, ...]) -> np.ndarray:
    return rng.integers(-(2 ** (width - 1)), 2 ** (width - 1), size=size, dtype=np.int64)


@dataclass(frozen=True)
class DenseLayerSpec:
    """One dense layer to generate: sizes, one fixed-point type, reuse factor and weight seed."""

    d_in: int
    d_out: int
    precision: FixedPoint
    reuse_factor: int = 1
    seed: int = 0
    activation: Activation = "relu"

    def __post_init__(self) -> None:
        _check_int("d_in", self.d_in, 1, MAX_DIM)
        _check_int("d_out", self.d_out, 1, MAX_DIM)
        _check_common(self, "d_in*d_out")

    @property
    def n_inputs(self) -> int:
        return self.d_in

    @property
    def n_outputs(self) -> int:
        return self.d_out

    @property
    def n_products(self) -> int:
        return self.d_in * self.d_out

    @property
    def n_mult(self) -> int:
        return -(-self.n_products // self.reuse_factor)

    @property
    def design_id(self) -> str:
        p = self.precision
        return (
            f"dense_i{self.d_in}_o{self.d_out}_w{p.width}i{p.integer}_rf{self.reuse_factor}"
            f"_{self.activation}_s{self.seed}"
        )

    @property
    def kernel(self) -> str:
        return f"dense_{self.d_in}x{self.d_out}"

    def describe(self) -> dict[str, object]:
        """The layer in the project's ``model`` vocabulary (see docs/fpga-data.md: class_name, d_in ...)."""
        return {"class_name": "Dense", "d_in": [self.d_in], "d_out": [self.d_out], "neurons": self.d_out,
                "use_bias": True, "parameters": (self.d_in + 1) * self.d_out, "activation": self.activation,
                "reuse_factor": self.reuse_factor} | _precision_fields(self.precision)  # fmt: skip

    def weights_and_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """Seeded random weights ``(d_out, d_in)`` and bias ``(d_out,)`` as signed raw integers."""
        rng = np.random.default_rng(self.seed)
        w = _random_ints(rng, self.precision.width, (self.d_out, self.d_in))
        b = _random_ints(rng, self.precision.width, self.d_out)
        return w, b

    def matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weights, structural mask, bias) of the layer as a matrix-vector product."""
        w, b = self.weights_and_bias()
        return w, np.ones_like(w, dtype=bool), b


@dataclass(frozen=True)
class Conv1DLayerSpec:
    """A 1-D convolution (valid padding, stride 1) in hls4ml's io_parallel form.

    ``width`` positions of ``channels`` inputs, ``filters`` kernels of ``kernel_size`` taps; all
    ``out_width = width - kernel_size + 1`` output positions are computed from one input vector
    (like hls4ml's io_parallel with one partition), the ``out_width * filters * kernel_size *
    channels`` products time-shared over ``RF`` cycles; weights are shared between positions.
    """

    width: int
    channels: int
    filters: int
    kernel_size: int
    precision: FixedPoint
    reuse_factor: int = 1
    seed: int = 0
    activation: Activation = "relu"

    def __post_init__(self) -> None:
        _check_int("width", self.width, 1, MAX_DIM)
        _check_int("channels", self.channels, 1, MAX_DIM)
        _check_int("filters", self.filters, 1, MAX_DIM)
        _check_int("kernel_size", self.kernel_size, 1)
        if self.kernel_size > self.width:
            raise CollectorError(f"kernel_size = {self.kernel_size} is larger than width = {self.width}")
        _check_common(self, "out_width*filters*kernel_size*channels")

    @property
    def out_width(self) -> int:
        return self.width - self.kernel_size + 1

    @property
    def n_inputs(self) -> int:
        return self.width * self.channels

    @property
    def n_outputs(self) -> int:
        return self.out_width * self.filters

    @property
    def n_products(self) -> int:
        return self.out_width * self.filters * self.kernel_size * self.channels

    @property
    def n_mult(self) -> int:
        return -(-self.n_products // self.reuse_factor)

    @property
    def design_id(self) -> str:
        p = self.precision
        return (
            f"conv1d_w{self.width}_c{self.channels}_f{self.filters}_k{self.kernel_size}_w{p.width}i{p.integer}"
            f"_rf{self.reuse_factor}_{self.activation}_s{self.seed}"
        )

    @property
    def kernel(self) -> str:
        return f"conv1d_{self.width}x{self.channels}_k{self.kernel_size}_f{self.filters}"

    def describe(self) -> dict[str, object]:
        """The layer in the project's ``model`` vocabulary (Keras-style shapes without the batch)."""
        return {"class_name": "Conv1D", "d_in": [self.width, self.channels], "d_out": [self.out_width, self.filters],
                "filters": self.filters, "kernel_size": [self.kernel_size], "strides": [1], "padding": "valid",
                "use_bias": True, "parameters": (self.kernel_size * self.channels + 1) * self.filters,
                "activation": self.activation, "reuse_factor": self.reuse_factor} | _precision_fields(self.precision)  # fmt: skip

    def matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``pos * filters + f``, columns ``(pos + k) * channels + c`` (im2col as a sparse matrix)."""
        rng = np.random.default_rng(self.seed)
        kern = _random_ints(rng, self.precision.width, (self.filters, self.kernel_size, self.channels))
        bias_f = _random_ints(rng, self.precision.width, self.filters)
        w = np.zeros((self.n_outputs, self.n_inputs), dtype=np.int64)
        mask = np.zeros_like(w, dtype=bool)
        for pos in range(self.out_width):
            rows = slice(pos * self.filters, (pos + 1) * self.filters)
            cols = slice(pos * self.channels, (pos + self.kernel_size) * self.channels)
            w[rows, cols] = kern.reshape(self.filters, -1)
            mask[rows, cols] = True
        return w, mask, np.tile(bias_f, self.out_width)


LayerSpec = DenseLayerSpec | Conv1DLayerSpec


@dataclass(frozen=True)
class DenseSchedule:
    """The static schedule of a generated layer (what the RTL does, cycle by cycle)."""

    n_mult: int
    tree_depth: int
    cycles: int  # start sampled -> done
    ii: int
    acc_width: int


def _clog2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def _lit(value: int, width: int) -> str:
    """A two's-complement Verilog literal of ``width`` bits."""
    return f"{width}'h{value & ((1 << width) - 1):x}"


def generate_layer_verilog(spec: LayerSpec, *, module: str = "dense_layer") -> tuple[str, DenseSchedule]:
    """The Verilog-2005 source of ``spec`` (dense or conv1d, as a matrix-vector product) and its schedule.

    Products are the structural non-zeros of the layer matrix in row-major order (all entries
    for a dense layer, so product ``p`` has input ``p % d_in`` and output ``p // d_in``).
    """
    w_bits = spec.precision.width
    frac = spec.precision.frac
    rf, n_mult = spec.reuse_factor, spec.n_mult
    d_in, d_out = spec.n_inputs, spec.n_outputs
    weights, mask, bias = spec.matrix()
    out_idx, in_idx = np.nonzero(mask)  # row-major: output-major product order
    prod_w = 2 * w_bits
    acc_w = prod_w + _clog2(int(mask.sum(axis=1).max())) + 2
    cnt_w = max(1, _clog2(rf))

    # which product each (cycle, multiplier) computes; -1 when idle
    r_idx = np.arange(rf)[:, None]
    m_idx = np.arange(n_mult)[None, :]
    prod = r_idx + rf * m_idx  # (rf, n_mult)
    active = prod < spec.n_products
    safe = np.where(active, prod, 0)
    in_of = np.where(active, in_idx[safe], -1)
    out_of = np.where(active, out_idx[safe], -1)

    lines: list[str] = []
    emit = lines.append
    emit(f"// generated by hwsurrogate: {spec.design_id}")
    emit(f"// {spec.describe()}")
    emit(f"// d_in={d_in} d_out={d_out} precision={spec.precision} reuse_factor={rf} n_mult={n_mult}")
    emit(f"module {module} (")
    emit("  input wire clk,")
    emit("  input wire rst,")
    emit("  input wire start,")
    emit(f"  input wire [{d_in * w_bits - 1}:0] x_flat,")
    emit(f"  output reg [{d_out * w_bits - 1}:0] y_flat,")
    emit("  output reg done")
    emit(");")
    emit(f"  reg [{d_in * w_bits - 1}:0] x_reg;")
    emit("  reg busy;")
    emit(f"  reg [{cnt_w - 1}:0] cnt;")
    last_cnt = _lit(rf - 1, cnt_w)
    emit("  always @(posedge clk) begin")
    emit("    if (rst) begin busy <= 1'b0; cnt <= 0; end")
    emit(
        f"    else if (start && (!busy || cnt == {last_cnt})) begin busy <= 1'b1; cnt <= 0; x_reg <= x_flat; end"
    )
    emit(f"    else if (busy) begin if (cnt == {last_cnt}) busy <= 1'b0; else cnt <= cnt + 1'b1; end")
    emit("  end")

    # stage 0: operand muxes (combinational), stage 1: product registers
    for m in range(n_mult):
        emit(f"  reg signed [{w_bits - 1}:0] a{m}, w{m};")
        emit(f"  reg signed [{prod_w - 1}:0] p{m};")
        ins = in_of[:, m]
        emit("  always @(*) begin")
        distinct_in = set(int(i) for i in ins if i >= 0)
        if len(distinct_in) == 1 and rf == 1:
            (i,) = distinct_in
            emit(f"    a{m} = x_reg[{i * w_bits} +: {w_bits}];")
            emit(f"    w{m} = {_lit(int(weights[out_of[0, m], in_of[0, m]]), w_bits)};")
        else:
            emit("    case (cnt)")
            for r in range(rf):
                if ins[r] < 0:
                    continue
                i, o = int(ins[r]), int(out_of[r, m])
                emit(
                    f"      {_lit(r, cnt_w)}: begin a{m} = x_reg[{i * w_bits} +: {w_bits}]; "
                    f"w{m} = {_lit(int(weights[o, i]), w_bits)}; end"
                )
            emit(f"      default: begin a{m} = {w_bits}'h0; w{m} = {w_bits}'h0; end")
            emit("    endcase")
        emit("  end")
        emit(f"  always @(posedge clk) p{m} <= a{m} * w{m};")
    emit("  reg v1, first1, last1;")
    emit(f"  reg [{cnt_w - 1}:0] c1;")
    emit("  always @(posedge clk) begin")
    emit(f"    v1 <= rst ? 1'b0 : busy; c1 <= cnt; first1 <= (cnt == 0); last1 <= (cnt == {last_cnt});")
    emit("  end")

    # per output: which multipliers ever contribute, and in which cycles (mask when not always)
    terms_of: list[list[str]] = []
    for o in range(d_out):
        terms: list[str] = []
        for m in range(n_mult):
            hits = out_of[:, m] == o
            if not hits.any():
                continue
            if bool(np.all(hits | (out_of[:, m] < 0))):
                terms.append(f"p{m}")  # idle cycles multiply by 0, so no mask is needed
            else:
                mask = "".join("1" if h else "0" for h in hits[::-1])
                emit(f"  localparam [{rf - 1}:0] MASK_{o}_{m} = {rf}'b{mask};")
                terms.append(f"(MASK_{o}_{m}[c1] ? p{m} : {prod_w}'sd0)")
        terms_of.append(terms)
    depth = max(_clog2(len(t)) for t in terms_of)

    # registered balanced adder trees, all padded to the same depth
    for o, terms in enumerate(terms_of):
        level = terms
        for lv in range(depth):
            nxt: list[str] = []
            for k in range(0, len(level), 2):
                name = f"t{o}_{lv}_{k // 2}"
                emit(f"  reg signed [{acc_w - 1}:0] {name};")
                rhs = level[k] if k + 1 >= len(level) else f"{level[k]} + {level[k + 1]}"
                emit(f"  always @(posedge clk) {name} <= {rhs};")
                nxt.append(name)
            level = nxt
        emit(f"  wire signed [{acc_w - 1}:0] s{o} = {level[0]};")
    emit("  reg vt, firstt, lastt;")
    if depth == 0:
        emit("  always @(*) begin vt = v1; firstt = first1; lastt = last1; end")
    else:
        emit(f"  reg [{depth - 1}:0] vd, fd, ld;")
        if depth == 1:
            emit("  always @(posedge clk) begin vd <= rst ? 1'b0 : v1; fd <= first1; ld <= last1; end")
        else:
            emit(
                f"  always @(posedge clk) begin vd <= rst ? 0 : {{vd[{depth - 2}:0], v1}}; "
                f"fd <= {{fd[{depth - 2}:0], first1}}; ld <= {{ld[{depth - 2}:0], last1}}; end"
            )
        emit(
            f"  always @(*) begin vt = vd[{depth - 1}]; firstt = fd[{depth - 1}]; lastt = ld[{depth - 1}]; end"
        )

    # accumulator (bias aligned to the product's 2*frac fractional bits) and output register
    emit("  reg va;")
    for o in range(d_out):
        emit(f"  reg signed [{acc_w - 1}:0] acc{o};")
        b = int(bias[o]) << frac
        emit(f"  localparam signed [{acc_w - 1}:0] B{o} = {_lit(b, acc_w)};")
    emit("  always @(posedge clk) begin")
    emit("    va <= rst ? 1'b0 : (vt && lastt);")
    emit("    if (vt) begin")
    for o in range(d_out):
        emit(f"      acc{o} <= (firstt ? B{o} : acc{o}) + s{o};")
    emit("    end")
    emit("  end")
    emit("  always @(posedge clk) begin")
    emit("    done <= rst ? 1'b0 : va;")
    emit("    if (va) begin")
    hi, lo = frac + w_bits - 1, frac
    for o in range(d_out):
        sl = f"acc{o}[{hi}:{lo}]"
        val = f"(acc{o}[{acc_w - 1}] ? {w_bits}'h0 : {sl})" if spec.activation == "relu" else sl
        emit(f"      y_flat[{o * w_bits} +: {w_bits}] <= {val};")
    emit("    end")
    emit("  end")
    emit("endmodule")
    schedule = DenseSchedule(n_mult=n_mult, tree_depth=depth, cycles=rf + depth + 3, ii=rf, acc_width=acc_w)
    return "\n".join(lines) + "\n", schedule


generate_dense_verilog = generate_layer_verilog  # the dense case, by its historical name


def reference_output(spec: LayerSpec, x_raw: np.ndarray) -> np.ndarray:
    """What the generated RTL outputs for raw signed inputs ``x_raw`` (n_inputs,), as raw unsigned words."""
    w, mask, b = spec.matrix()
    frac, width = spec.precision.frac, spec.precision.width
    acc = (b << frac) + np.where(mask, w, 0) @ x_raw.astype(np.int64)
    if spec.activation == "relu":
        acc = np.where(acc < 0, 0, acc)
    return (acc >> frac) & ((1 << width) - 1)


reference_dense = reference_output
