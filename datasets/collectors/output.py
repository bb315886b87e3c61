"""Where collected rows go: the local store (default) or a running ``hws serve`` (``--push``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click
import polars as pl

from hwsurrogate.cli.data import store_option
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import HwSurrogateError


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--store``, ``--push URL`` and ``--token`` shared by every ``hws collect`` command."""
    fn = click.option(
        "--token",
        envvar="HWSURROGATE_SERVICE_TOKEN",
        default=None,
        help="Bearer token for --push (default: $HWSURROGATE_SERVICE_TOKEN).",
    )(fn)
    fn = click.option(
        "--push",
        "push_url",
        metavar="URL",
        default=None,
        help="Send the rows to a running `hws serve` at URL instead of the local store.",
    )(fn)
    return store_option(fn)


def deliver(
    kind: str,
    frame: pl.DataFrame,
    *,
    partition: str,
    store_path: Path | None,
    push_url: str | None,
    token: str | None,
    mode: Literal["append", "replace"] = "append",
) -> str:
    """Write ``frame`` (already schema-conforming) and return a one-line summary.

    With ``push_url`` the rows go to the service via ``HwsClient.upload_rows``; otherwise they
    are committed to the store (all or nothing).
    """
    if frame.height == 0:
        return f"no {kind} rows to write"
    if push_url:
        try:
            from hwsurrogate.client import HwsClient  # type: ignore[import-not-found]
        except ImportError as exc:
            raise click.ClickException(
                f"--push needs the HTTP client hwsurrogate.client, which is not available in this build ({exc}); "
                "write to the local store instead (omit --push) and upload later"
            ) from None
        client = HwsClient(push_url, token)
        try:
            result = client.upload_rows(kind, frame)
        except HwSurrogateError:
            raise  # the service's own error (status, detail, field) is already clear
        except Exception as exc:  # connection refused, timeout, DNS...
            raise click.ClickException(
                f"--push {push_url}: upload of {frame.height} {kind} rows failed ({type(exc).__name__}: {exc}); "
                "nothing was written to the local store"
            ) from None
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
        return f"pushed {frame.height} {kind} rows to {push_url}: {result}"
    store = DatasetStore(store_path)
    if mode == "replace":
        n = store.replace(kind, frame, partition=partition)
        return f"wrote {n} {kind} row(s) to {store.root} (partition {partition})"
    n = store.append(kind, frame, partition=partition)
    return f"added {n} {kind} row(s) to {store.root} (partition {partition})"
