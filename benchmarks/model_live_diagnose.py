"""Where ``hws bench model-live``'s error comes from: per model and per op kind, on this CPU.

For every benchmark model and calibration model it gives, per op kind (one run, one thread,
thread-CPU timer):

- ``pred``: the operator model's per-op sum (the benchmark's fit, no launch gap);
- ``alone``: the same rows timed alone by the collector (:func:`collect_ops` on the model's own
  operator table: exact shapes, weights rotated as in the sweep): pred/alone is the operator
  model's error on these shapes (extrapolation, mapping);
- ``inplace``: each fx node timed where it runs inside the real model
  (:func:`~hwsurrogate.datasets.collectors.ops.inplace_op_times`: an fx Interpreter with a
  thread-CPU clock around every node, median over repeats): alone/inplace is the context effect
  (caches, fused or elided ops);
- ``e2e``: the eager forward measured end to end (the benchmark's ground truth).

It writes one JSON file (``--out``) and prints the tables. Usage::

    python benchmarks/model_live_diagnose.py --ops-cache /tmp/ops.parquet --out /tmp/diag.json

``--ops-cache`` keeps the operator sweep between runs (collected when the file is missing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl

_TIMEABLE = {
    "activation": {"relu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "relu6"},
    "reduction": {"mean", "sum", "amax", "adaptive_avg_pool2d", "max_pool2d"},
    "other": {"view", "transpose", "reshape", "flatten", "permute", "unsqueeze", "getitem"},
}


def _alone(table: pl.DataFrame, seed: int) -> np.ndarray:
    """Each row timed alone by the collector (NaN where it cannot time the op)."""
    from hwsurrogate.datasets.collectors.ops import collect_ops

    ok = np.array([
        (k not in _TIMEABLE or o in _TIMEABLE[k]) and o != "grouped_conv2d" and k != "other"
        and not (k == "reduction" and o in ("adaptive_avg_pool2d", "max_pool2d"))
        for k, o in zip(table["op_kind"], table["op"], strict=True)
    ])  # fmt: skip
    out = np.full(table.height, np.nan)
    if ok.any():
        got = collect_ops(table.filter(pl.Series(ok)), threads=1, timer="thread_cpu", min_time_s=0.02,
                          seed=seed, progress=False)  # fmt: skip
        out[ok] = got.ops["latency_ms"].to_numpy()
    return out


@click.command()
@click.option("--ops-cache", default="/tmp/model_live_ops.parquet", show_default=True)
@click.option("--out", "out_path", default="/tmp/model_live_diag.json", show_default=True)
@click.option("--repeats", default=15, show_default=True)
@click.option("--alone/--no-alone", default=True, show_default=True)
@click.option(
    "--leaf",
    "leaves",
    type=int,
    multiple=True,
    default=(10,),
    show_default=True,
    help="Also predict with OperatorLatencyModel(min_samples_leaf=LEAF) (column pred_leafLEAF).",
)
def main(ops_cache: str, out_path: str, repeats: int, alone: bool, leaves: tuple[int, ...]) -> None:
    import torch

    from hwsurrogate.benchmarks.model_live import build_cases
    from hwsurrogate.datasets.collectors.environment import thread_limit
    from hwsurrogate.datasets.collectors.ops import calibration_cases, collect_ops, inplace_op_times
    from hwsurrogate.datasets.frontends.torch_fx import trace_module
    from hwsurrogate.surrogates.models.ops import OperatorLatencyModel

    load0 = os.getloadavg()
    cache = Path(ops_cache)
    if cache.exists():
        ops, devices = pl.read_parquet(cache), pl.read_parquet(cache.with_suffix(".dev.parquet"))
    else:
        got = collect_ops(threads=1, timer="thread_cpu", seed=0)
        ops, devices = got.ops, got.device
        ops.write_parquet(cache)
        devices.write_parquet(cache.with_suffix(".dev.parquet"))
    model = OperatorLatencyModel().fit(ops, devices)
    small = {leaf: OperatorLatencyModel(min_samples_leaf=leaf).fit(ops, devices) for leaf in leaves}
    dev = devices.row(0, named=True)

    torch.manual_seed(0)
    items: list[tuple[str, Any, tuple[int, ...], str]] = []
    for c in build_cases():
        items.append((c.name, c.build(), c.input_shape, c.input_dtype))
    for c in calibration_cases(16, seed=1):
        items.append((c.name, c.module, c.input_shape, c.input_dtype))
    results = []
    with thread_limit(1):
        for name, module, shape, dtype in items:
            module.eval()
            gen = torch.Generator().manual_seed(0)
            x = (
                torch.randint(0, 100, shape, generator=gen)
                if dtype == "int64"
                else torch.randn(*shape, generator=gen)
            )
            inplace, e2e = inplace_op_times(module, x, repeats)
            table = trace_module(module, [shape], input_dtypes=[dtype], source=name)
            pred = model.predict_ops(table, dev)
            extra = {f"pred_leaf{leaf}": m.predict_ops(table, dev) for leaf, m in small.items()}
            al = _alone(table, 0) if alone else np.full(table.height, np.nan)
            ip = np.array([inplace.get(n.split(".")[0], np.nan) for n in table["name"]])
            per_kind: dict[str, dict[str, float]] = {}
            for kind in sorted(set(table["op_kind"])):
                m = (table["op_kind"] == kind).to_numpy()
                per_kind[kind] = {"n": int(m.sum()), "pred": float(np.nansum(pred[m])),
                                  "alone": float(np.nansum(al[m])), "inplace": float(np.nansum(ip[m])),
                                  "alone_rows": int(np.isfinite(al[m]).sum()),
                                  **{c: float(np.nansum(v[m])) for c, v in extra.items()}}  # fmt: skip
            results.append({"model": name, "e2e": e2e, "inplace_all_nodes": float(sum(inplace.values())),
                            "n_rows": table.height, "per_kind": per_kind,
                            "rows": table.select("name", "op_kind", "op", "m", "n", "k", "batch", "rows", "cols",
                                                 "in_channels", "out_channels", "kernel_size", "input_size",
                                                 "stride").with_columns(
                                pl.Series("pred", pred), pl.Series("alone", al), pl.Series("inplace", ip),
                                *(pl.Series(c, v) for c, v in extra.items())
                            ).to_dicts()})  # fmt: skip
            tot = {k: sum(v[k] for v in per_kind.values()) for k in ("pred", "alone", "inplace")}
            click.echo(f"{name:22s} e2e {e2e:8.3f}  inplace {tot['inplace']:8.3f} (all nodes "
                       f"{sum(inplace.values()):8.3f})  alone {tot['alone']:8.3f}  pred {tot['pred']:8.3f}  "
                       f"rows {table.height}")  # fmt: skip
    out = {"load_start": load0, "load_end": os.getloadavg(), "results": results}
    Path(out_path).write_text(json.dumps(out, default=float))
    click.echo(f"load average start {load0}, end {os.getloadavg()}")


if __name__ == "__main__":
    main()
