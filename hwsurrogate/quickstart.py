"""``hws quickstart``: run the pipeline end to end on embedded defaults.

Steps run in order and each says what it did; a step whose inputs are absent (for example
no public data under HWSURROGATE_DATA_DIR) is skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path

import click

from hwsurrogate.datasets.importers import IMPORTERS, default_path, import_source
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import HwSurrogateError, SourceNotFoundError
from hwsurrogate.progress import make_progress


@click.command()
@click.option(
    "--store",
    "store_path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset store directory (default: $HWSURROGATE_STORE or ./store).",
)
@click.option("--skip-import", is_flag=True, help="Do not import the public data.")
def quickstart(store_path: Path | None, skip_import: bool) -> None:
    """Import the public data (when present) and list what the store holds.

    Later steps (collect -> train -> serve -> query) are added as they land.
    """
    store = DatasetStore(store_path)
    click.echo(f"store: {store.root.resolve()}")
    if not skip_import:
        _import_all(store)
    summary = store.summary()
    for kind, entry in summary.items():
        click.echo(f"  {kind:8s} {entry['rows']:>10,} rows  {entry['sources']}")


def _import_all(store: DatasetStore) -> None:
    with make_progress() as progress:
        task = progress.add_task("import", total=len(IMPORTERS))
        for name in IMPORTERS:
            progress.update(task, description=f"import {name}")
            try:
                path = default_path(name)
                if path.exists():
                    report = import_source(name, path, store=store)
                    progress.console.print(f"imported {name}: {report.rows} in {report.seconds:.1f} s")
                else:
                    progress.console.print(f"[yellow]skipped {name}: not found at {path}")
            except SourceNotFoundError as exc:
                progress.console.print(f"[yellow]skipped {name}: {exc}")
            except (HwSurrogateError, NotImplementedError) as exc:
                progress.console.print(f"[red]import {name} failed: {exc}")
            progress.advance(task)
