"""Time reading one device's NB201 latencies (15,625 rows) back from the dataset store.

    python benchmarks/read_device.py [--store DIR] [--device help/pixel2] [--repeats 20] [--json FILE]

Without --store, HELP is first imported into a temporary store from $HWSURROGATE_DATA_DIR.
Each repeat is a cold call of ``DatasetStore(root).read("latency", device=..., space="nb201")``
(a new store object, parquet scanned with the device filter pushed down). Prints the median,
min and max against the 100 ms target. Exit status 1 if the median misses it or the row
count is not 15,625.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hwsurrogate.datasets.importers import default_path, import_source
from hwsurrogate.datasets.store import DatasetStore

TARGET_MS = 100.0
EXPECTED_ROWS = 15625


def time_reads(root: Path, device: str, repeats: int) -> dict[str, object]:
    times_ms: list[float] = []
    rows = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        df = DatasetStore(root).read("latency", device=device, space="nb201")
        times_ms.append((time.perf_counter() - t0) * 1000)
        rows = df.height
    store_rows = DatasetStore(root).scan("latency").select("device_id").collect().height
    return {
        "device": device,
        "rows": rows,
        "store_latency_rows": store_rows,
        "repeats": repeats,
        "median_ms": round(statistics.median(times_ms), 3),
        "min_ms": round(min(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
        "target_ms": TARGET_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="existing store (default: import HELP into a temp one)"
    )
    parser.add_argument("--device", default="help/pixel2", help="device id to read (default help/pixel2)")
    parser.add_argument("--repeats", type=int, default=20, help="timed reads (default 20)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)
    t_wall = time.perf_counter()
    if args.store is not None:
        result = time_reads(args.store, args.device, args.repeats)
    else:
        if not os.environ.get("HWSURROGATE_DATA_DIR"):
            parser.error("pass --store or set HWSURROGATE_DATA_DIR so HELP can be imported first")
        with tempfile.TemporaryDirectory(prefix="hws-read-bench-") as tmp:
            root = Path(tmp) / "store"
            import_source("help", default_path("help"), store=DatasetStore(root))
            result = time_reads(root, args.device, args.repeats)
    result["wall_seconds"] = round(time.perf_counter() - t_wall, 2)
    table = Table("device", "rows", "store rows", "repeats", "median ms", "min ms", "max ms", "target ms")
    table.add_row(
        str(result["device"]), f"{result['rows']:,}", f"{result['store_latency_rows']:,}", str(result["repeats"]),
        f"{result['median_ms']:.1f}", f"{result['min_ms']:.1f}", f"{result['max_ms']:.1f}", f"< {TARGET_MS:.0f}",
    )  # fmt: skip
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    ok = result["median_ms"] < TARGET_MS and result["rows"] == EXPECTED_ROWS  # type: ignore[operator]
    console.print(f"target {'met' if ok else 'MISSED'}; benchmark wall time {result['wall_seconds']} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
