"""One result shape for every ``hws bench`` command: a printed table and a JSON file.

JSON written by ``--json FILE`` (read by ``benchmarks/make_table.py`` to build BENCHMARKS.md)::

    {
      "benchmark": "gemm-neusight",               # the `hws bench` name
      "command": "hws bench gemm-neusight --json bench-results/gemm-neusight.json",
      "wall_s": 212.4,                              # wall time of the whole benchmark
      "created_at": "2026-11-22T03:40:00+00:00",
      "protocol": "train P4,P100,T4,V100,A100-40GB; test H100,L4,A100-80GB",
      "data": {"rows_train": 119847, ...},          # free-form facts about the data used
      "rows": [                                     # one per reported number
        {"metric": "runtime MAPE %", "split": "H100 bmm", "ours": 12.1,
         "anchor": 13.8, "anchor_source": "NeuSight (ASPLOS'25) Table 4",
         "target": 15.0, "direction": "<=", "met": true, "n": 2477, "note": ""}
      ],
      "details": {...}                              # anything else (per-fold metrics, config)
    }

``direction`` is ``"<="`` when lower is better (errors) and ``">="`` when higher is better (R²,
accuracy); ``met`` is null when a row has no target. See docs/benchmarks.md.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import click

from hwsurrogate.io import atomic_write_json

__all__ = ["BenchReport", "BenchRow", "json_option", "json_safe", "log_bench", "store_option"]


@dataclass
class BenchRow:
    metric: str
    split: str
    ours: float
    anchor: float | None = None
    target: float | None = None
    direction: Literal["<=", ">="] = "<="
    anchor_source: str = ""
    n: int | None = None
    note: str = ""
    met: bool | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.target is not None and self.ours is not None and math.isfinite(self.ours):
            self.met = self.ours <= self.target if self.direction == "<=" else self.ours >= self.target
        elif self.target is not None:
            self.met = False


@dataclass
class BenchReport:
    benchmark: str
    protocol: str = ""
    rows: list[BenchRow] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    wall_s: float = 0.0
    created_at: str = ""
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def add(self, *args: Any, **kwargs: Any) -> BenchRow:
        row = BenchRow(*args, **kwargs)
        self.rows.append(row)
        return row

    def finish(self) -> BenchReport:
        self.wall_s = round(time.perf_counter() - self._t0, 2)
        self.created_at = datetime.now(UTC).isoformat(timespec="seconds")
        if not self.command:
            argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv else []
            self.command = shlex.join(["hws", *argv[1:]]) if argv and argv[0] == "hws" else shlex.join(argv)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_t0", None)
        return json_safe(d)

    def table(self) -> str:
        head = ("metric", "split", "ours", "anchor", "target", "met", "n")
        body = []
        for r in self.rows:
            target = "" if r.target is None else f"{r.direction} {_fmt(r.target)}"
            met = "" if r.met is None else ("yes" if r.met else "NO")
            body.append(
                (
                    r.metric,
                    r.split,
                    _fmt(r.ours),
                    _fmt(r.anchor),
                    target,
                    met,
                    "" if r.n is None else str(r.n),
                )
            )
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
        return "\n".join(lines)

    def emit(self, json_path: str | os.PathLike[str] | None) -> None:
        """Print the table and wall time; write the JSON atomically when asked."""
        self.finish()
        click.echo(f"== {self.benchmark}: {self.protocol}")
        for k, v in self.data.items():
            click.echo(f"   {k}: {v}")
        click.echo(self.table())
        click.echo(f"wall time {self.wall_s:.1f} s")
        if json_path:
            atomic_write_json(Path(json_path), self.to_dict())
            click.echo(f"wrote {json_path}")


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-" if x is None else str(x)
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def json_safe(obj: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def log_bench(report: BenchReport) -> None:
    """Log the bench metrics to MLflow (experiment 'bench'); cheap, metrics and JSON only."""
    try:
        import mlflow

        from hwsurrogate.surrogates.registry.tracking import start_run

        with start_run("bench", run_name=report.benchmark, benchmark=report.benchmark):
            for i, r in enumerate(report.rows):
                if r.ours is not None and math.isfinite(r.ours):
                    key = f"{i:02d}_{r.metric}_{r.split}"
                    mlflow.log_metric(
                        "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)[:250], r.ours
                    )
            mlflow.log_dict(report.to_dict(), "bench.json")
    except Exception as exc:  # tracking must never sink a benchmark
        click.echo(f"(MLflow logging skipped: {exc})", err=True)


def json_option(benchmark: str) -> Any:
    """``--json FILE`` -> ``json_path``: where a benchmark writes every metric."""
    return click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Write every metric to this JSON file (e.g. bench-results/{benchmark}.json).",
    )


#: ``--store DIR`` -> ``store_root`` for the benchmarks that read a store other than the default.
#: The same flag and default as ``hwsurrogate.cli.options.store_option``; defined here because the
#: benchmarks sit below the command line (they may not import ``hwsurrogate.cli``).
store_option = click.option(
    "--store", "store_root", default=None, help="Dataset store directory (default: $HWSURROGATE_STORE or ./store)."
)
