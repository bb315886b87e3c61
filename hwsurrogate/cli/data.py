"""``hws data``: import, list, show and export the local dataset store."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click

from hwsurrogate.cli.lazy import LazyGroup
from hwsurrogate.cli.options import json_option, out_option, store_option
from hwsurrogate.datasets import KINDS
from hwsurrogate.datasets.importers import IMPORTERS, import_available, import_source, sources

__all__ = ["data"]


@click.group(cls=LazyGroup)
def data() -> None:
    """Import, list, show and export datasets in the local store.

    \b
    Sources are read from --from PATH or from $HWSURROGATE_DATA_DIR/<source path>;
    `hws data sources` lists them with their public download locations.
    """


@data.command("sources")
@json_option
def sources_cmd(as_json: bool) -> None:
    """List the known public sources, their paths under HWSURROGATE_DATA_DIR and full download URLs."""
    known = [
        {"source": s.name, "tables": list(s.kinds), "path": s.subpath, "download": s.url, "license": s.license}
        for s in sources()
    ]
    if as_json:
        click.echo(json.dumps(known, indent=2))
        return
    for entry in known:  # plain lines, never cut: the URLs are meant to be copied
        click.echo(f"{entry['source']}  ({', '.join(entry['tables'])}; {entry['license']})")
        click.echo(f"  path:     $HWSURROGATE_DATA_DIR/{entry['path']}")
        click.echo(f"  download: {entry['download']}")


@data.command("import")
@click.argument("source", type=click.Choice([*IMPORTERS, "all"]))
@click.option(
    "--from",
    "from_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Folder (or file) of the source; default $HWSURROGATE_DATA_DIR/<source path>.",
)
@store_option
def import_cmd(source: str, from_path: Path | None, store_path: Path | str | None) -> None:
    """Import SOURCE (or `all` sources found under HWSURROGATE_DATA_DIR) into the store.

    Re-importing a source replaces its rows (no duplicates). A malformed file stops the
    import with a message naming it, and the store is left exactly as it was.
    """
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.progress import make_progress

    store = DatasetStore(store_path)
    if source != "all":
        report = import_source(source, from_path, store=store)
        click.echo(f"{report.source}: {_rows(report.rows)} from {report.path} in {report.seconds:.1f} s")
        return
    if from_path is not None:
        raise click.UsageError("--from takes one source's folder; `all` reads HWSURROGATE_DATA_DIR")
    failures: list[str] = []
    with make_progress() as progress:
        task = progress.add_task("importing", total=len(IMPORTERS))
        for outcome in import_available(IMPORTERS, store=store):
            name = outcome.source
            if outcome.report is not None:
                report = outcome.report
                progress.console.print(f"{name}: {_rows(report.rows)} in {report.seconds:.1f} s")
            elif outcome.skipped is not None:
                progress.console.print(f"[yellow]{name}: skipped, {outcome.skipped}")
            else:
                failures.append(f"{name}: {outcome.error}")
                progress.console.print(f"[red]{name}: failed, {outcome.error}")
            progress.advance(task)
    if failures:
        raise click.ClickException(
            "some imports failed (their previous rows are unchanged):\n" + "\n".join(failures)
        )


def _rows(rows: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind} rows" for kind, n in rows.items())


@data.command("list")
@json_option
@store_option
def list_cmd(as_json: bool, store_path: Path | str | None) -> None:
    """Tables in the store with row counts per kind and per source, and the devices present."""
    from rich.console import Console
    from rich.table import Table

    from hwsurrogate.datasets.store import DatasetStore

    summary = DatasetStore(store_path).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console = Console()
    table = Table("table", "source", "rows", "devices")
    for kind, entry in summary.items():
        srcs: dict[str, int] = entry["sources"]  # type: ignore[assignment]
        if not srcs:
            table.add_row(kind, "-", "0", "")
            continue
        for i, (src, n) in enumerate(srcs.items()):
            table.add_row(kind if i == 0 else "", src, f"{n:,}", "")
        devices = entry.get("devices") or []
        table.add_row("", "[b]total", f"[b]{entry['rows']:,}", str(len(devices)) if devices else "")  # type: ignore[arg-type]
    console.print(table)
    for kind, entry in summary.items():  # the device ids in full, to copy into predict/adapt/show
        devices = list(entry.get("devices") or [])  # type: ignore[call-overload]
        if devices:
            click.echo(f"\n{kind} devices ({len(devices)}):")
            click.echo(textwrap.fill(", ".join(devices), width=100, initial_indent="  ", subsequent_indent="  ",
                                     break_long_words=False, break_on_hyphens=False))  # fmt: skip


#: columns `hws data show` always prints in full: what `hws predict` / `hws adapt` take as keys
SHOW_KEYS = ("device_id", "space", "arch_key", "arch_index", "kernel", "pragmas", "design_id", "op", "dtype", "layout")
#: other text columns longer than this are left out of the table (``--json`` has them)
SHOW_MAX_CHARS = 80


@data.command("show")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--device", default=None, help="Only rows of this device id (e.g. help/pixel2).")
@click.option("--source", default=None, help="Only rows of this source.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Rows to print.")
@json_option
@store_option
def show_cmd(
    kind: str, device: str | None, source: str | None, limit: int, as_json: bool, store_path: Path | str | None
) -> None:
    """Print the first rows of table KIND; keys (device_id, arch_key, ...) are never cut, so they can be copied.

    Columns holding long text other than the keys (e.g. hls4ml model JSON, `extra`) are left out of the
    table and named below it; `--json` prints every column in full.
    """
    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore

    df = DatasetStore(store_path).scan(kind, device=device, source=source).head(limit).collect()
    if as_json:
        click.echo(json.dumps(df.to_dicts(), indent=1, default=str))
        return
    bulky = [c for c in df.columns if c not in SHOW_KEYS and df[c].dtype == pl.String
             and (df[c].str.len_chars().max() or 0) > SHOW_MAX_CHARS]  # fmt: skip
    with pl.Config(tbl_rows=limit, tbl_cols=-1, fmt_str_lengths=60_000, tbl_width_chars=65_000,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):  # fmt: skip
        click.echo(df.drop(bulky))
    if bulky:
        click.echo(f"not shown (long text): {', '.join(bulky)}; `--json` prints every column")


@data.command("export")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@out_option(help="Output file (default: <kind>.<format>; '-' writes CSV to stdout).")
@click.option("--device", default=None, help="Only rows of this device id.")
@store_option
def export_cmd(kind: str, fmt: str, out: Path | None, device: str | None, store_path: Path | str | None) -> None:
    """Export table KIND as parquet or CSV."""
    from hwsurrogate.datasets.store import DatasetStore

    df = DatasetStore(store_path).read(kind, device=device)
    if str(out) == "-":
        if fmt != "csv":
            raise click.UsageError("only --format csv can go to stdout")
        df.write_csv(sys.stdout)
        return
    out = out or Path(f"{kind}.{fmt}")
    if fmt == "parquet":
        df.write_parquet(out)
    else:
        df.write_csv(out)
    click.echo(f"wrote {df.height:,} rows to {out}")


@data.command("history")
@click.argument("kind", type=click.Choice([*KINDS, "_commits"]), required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Commits to print.")
@json_option
@store_option
def history_cmd(kind: str | None, limit: int, as_json: bool, store_path: Path | str | None) -> None:
    """Without KIND: the current version of every table (what `hws train --data-version` takes).
    With KIND: that table's commits, newest first (version, time, operation, rows written).

    \b
    Every training run records the versions it read in MLflow (param data_versions);
    `hws train ... --data-version 'gemm=3,devices=1'` reads the store as it was then.
    """
    from hwsurrogate.datasets.store import DatasetStore, format_versions

    store = DatasetStore(store_path)
    if kind is None:
        versions = store.versions()
        if as_json:
            click.echo(json.dumps(versions, indent=2))
            return
        for name, version in versions.items():
            click.echo(f"{name:16s} version {version}")
        click.echo(f"\n--data-version {format_versions(versions) or '(empty store)'}")
        return
    entries = store.history(kind, limit=limit)
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=str))
        return
    for e in entries:
        metrics = e.get("operationMetrics") or {}
        rows = metrics.get("num_target_rows_inserted", metrics.get("num_added_rows", ""))  # type: ignore[union-attr]
        when = e.get("timestamp")
        stamp = _ms_to_iso(when) if isinstance(when, int) else str(when)
        added = f"rows+{rows}" if rows != "" else ""
        click.echo(f"v{e.get('version')}  {stamp}  {e.get('operation')}  {added}")


def _ms_to_iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@data.command("compact")
@click.option(
    "--orphan-age",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds after which rows of an import that never reached its commit point (killed) are removed.",
)
@store_option
def compact_cmd(orphan_age: float, store_path: Path | str | None) -> None:
    """Remove rows of killed imports and bin-pack each table's small files (many uploads) into large ones.

    Readers are not disturbed: compaction is one more Delta commit; old files stay until `hws data vacuum`.
    """
    from hwsurrogate.datasets.store import DatasetStore

    for kind, m in DatasetStore(store_path).compact(orphan_age_s=orphan_age).items():
        click.echo(f"{kind}: {m.get('numFilesRemoved', 0)} files -> {m.get('numFilesAdded', 0)}, "
                   f"{m.get('orphan_rows_removed', 0)} orphan rows removed")  # fmt: skip


@data.command("vacuum")
@click.option(
    "--retention-hours",
    default=168,
    show_default=True,
    type=click.IntRange(min=0),
    help="Keep every file a version younger than this needs; time travel further back stops working.",
)
@click.option("--dry-run", is_flag=True, help="List the files that would be deleted, delete nothing.")
@store_option
def vacuum_cmd(retention_hours: int, dry_run: bool, store_path: Path | str | None) -> None:
    """Delete data files that no table version within --retention-hours refers to (after compact / replace)."""
    from hwsurrogate.datasets.store import DatasetStore

    out = DatasetStore(store_path).vacuum(retention_hours=retention_hours, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for name, files in out.items():
        click.echo(f"{name}: {verb} {len(files)} file(s)")


@data.command("migrate")
@store_option
def migrate_cmd(store_path: Path | str | None) -> None:
    """Convert a store written before Delta Lake (<kind>/<partition>.parquet files) in place, all or nothing.

    Each partition file becomes the same partition of its table; the old files are moved to
    <store>/pre-delta/ (delete it once satisfied). Running it again does nothing.
    """
    from hwsurrogate.datasets.migrate import migrate_parquet_store
    from hwsurrogate.settings import get_settings

    root = store_path if store_path is not None else get_settings(fresh=True).store
    if isinstance(root, str):
        raise click.UsageError("migrate converts a local store directory; an s3:// store never had parquet files")
    counts = migrate_parquet_store(root)
    if not counts:
        click.echo(f"{root}: nothing to migrate (no <kind>/<partition>.parquet files)")
        return
    for (kind, part), n in counts.items():
        click.echo(f"{kind}/{part}: {n:,} rows")
    click.echo(f"migrated {len(counts)} partition(s); the old files are in {Path(root) / 'pre-delta'}")
