"""Import every registered public source into a fresh temporary store and time it.

    python benchmarks/import_all.py [--data-dir DIR] [--json FILE] [--keep-store DIR]

Prints one row per (source, table): rows imported, the count the source README promises
(``EXPECTED_ROWS`` of the importer module, '-' where it declares none), whether they agree,
and the seconds the source took; then the total wall time against the 2-minute target.
Sources whose importer is still a stub are reported as "not implemented" and skipped; sources
missing from the data folder as "not found". Exit status 1 if any import failed or a count
disagrees with its README.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hwsurrogate.datasets.importers import IMPORTERS, default_path, import_source, importer
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import HwSurrogateError

TARGET_S = 120.0


def run(data_dir: Path, store_root: Path) -> dict[str, object]:
    store = DatasetStore(store_root)
    results: list[dict[str, object]] = []
    t_all = time.perf_counter()
    for name in IMPORTERS:
        mod = importer(name)
        expected: dict[str, int] = getattr(mod, "EXPECTED_ROWS", {})
        path = default_path(name, data_dir)
        entry: dict[str, object] = {"source": name, "path": str(path), "expected": expected}
        if not path.exists():
            entry["status"] = "not found"
        else:
            t0 = time.perf_counter()
            try:
                report = import_source(name, path, store=store)
            except HwSurrogateError as exc:
                cause = exc.__cause__
                entry["status"] = "not implemented" if isinstance(cause, NotImplementedError) else "failed"
                entry["error"] = str(exc)
            else:
                entry["status"] = "ok"
                entry["rows"] = report.rows
                mismatch = {
                    k: (report.rows.get(k), n) for k, n in expected.items() if report.rows.get(k) != n
                }
                if mismatch:
                    entry["status"] = "count mismatch"
                    entry["mismatch"] = mismatch
            entry["seconds"] = round(time.perf_counter() - t0, 3)
        results.append(entry)
    total = time.perf_counter() - t_all
    return {
        "data_dir": str(data_dir),
        "cpu_count": os.cpu_count(),
        "total_seconds": round(total, 3),
        "target_seconds": TARGET_S,
        "sources": results,
    }


def print_table(result: dict[str, object], console: Console) -> None:
    table = Table("source", "table", "rows", "expected (README)", "match", "seconds", "status")
    for e in result["sources"]:  # type: ignore[union-attr]
        rows: dict[str, int] = e.get("rows", {})
        expected: dict[str, int] = e["expected"]
        kinds = list(rows) or list(expected) or ["-"]
        for i, kind in enumerate(kinds):
            got, exp = rows.get(kind), expected.get(kind)
            match = "-" if got is None or exp is None else ("yes" if got == exp else "NO")
            table.add_row(
                e["source"] if i == 0 else "",
                kind,
                f"{got:,}" if got is not None else "-",
                f"{exp:,}" if exp is not None else "-",
                match,
                f"{e['seconds']:.2f}" if i == 0 and "seconds" in e else "",
                e["status"] if i == 0 else "",
            )
    console.print(table)
    total = result["total_seconds"]
    verdict = "met" if total < TARGET_S else "MISSED"  # type: ignore[operator]
    console.print(
        f"total wall time {total:.2f} s on {result['cpu_count']} CPU(s); target < {TARGET_S:.0f} s: {verdict}"
    )
    for e in result["sources"]:  # type: ignore[union-attr]
        if e["status"] == "failed":
            console.print(f"[red]{e['source']}: {e['error']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("HWSURROGATE_DATA_DIR"),
                        help="public data folder (default: $HWSURROGATE_DATA_DIR)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    parser.add_argument("--keep-store", type=Path, default=None, help="import into this folder and keep it")
    args = parser.parse_args(argv)
    if args.data_dir is None or not Path(args.data_dir).is_dir():
        parser.error("pass --data-dir or set HWSURROGATE_DATA_DIR to the public data folder")
    console = Console(width=None if sys.stdout.isatty() else 120)
    if args.keep_store is not None:
        result = run(Path(args.data_dir), args.keep_store)
    else:
        with tempfile.TemporaryDirectory(prefix="hws-import-bench-") as tmp:
            result = run(Path(args.data_dir), Path(tmp) / "store")
    print_table(result, console)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {args.json}")
    bad = [e for e in result["sources"] if e["status"] in {"failed", "count mismatch"}]  # type: ignore[union-attr]
    return 1 if bad or result["total_seconds"] >= TARGET_S else 0  # type: ignore[operator]


if __name__ == "__main__":
    sys.exit(main())
