"""Print the per-op-type error out of distribution by GPU, mode and phase from a
``hws bench model-neusight`` JSON (``details.per_op_kind``).

Usage::

    python benchmarks/model_neusight_perop.py bench-results/model-neusight.json [--kind Softmax]

Per (GPU, mode): the out-of-distribution configurations, their mean per-op-type error (the
benchmark's ``per-op-type error % (OOD)`` row restricted to them), the predicted / measured sums
of the forward and of the backward rows, and the backward share of the measured time.
"""

from __future__ import annotations

import argparse
import json

import polars as pl

from hwsurrogate.benchmarks.model_neusight import PEROP_KINDS, perop_breakdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_path", help="a `hws bench model-neusight --json` file")
    parser.add_argument("--kind", action="append", choices=sorted(PEROP_KINDS), default=None,
                        help="per-op type(s) to break down (default: all)")  # fmt: skip
    args = parser.parse_args()
    with open(args.json_path) as fh:
        per_kind = pl.DataFrame(json.load(fh)["details"]["per_op_kind"])
    if "phase" not in per_kind.columns:
        raise SystemExit(f"{args.json_path}: details.per_op_kind has no phase (written before the phase split)")
    for name in args.kind or list(PEROP_KINDS):
        with pl.Config(tbl_rows=30, tbl_width_chars=200, float_precision=2):
            print(name, PEROP_KINDS[name])
            print(perop_breakdown(per_kind, PEROP_KINDS[name]))


if __name__ == "__main__":
    main()
