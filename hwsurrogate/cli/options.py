"""Options every ``hws`` verb shares, defined once so they read and behave the same everywhere.

- ``--store DIR`` (:func:`store_option`, parameter ``store_path``): the dataset store; default
  ``$HWSURROGATE_STORE`` or ``./store`` (resolved by :class:`~hwsurrogate.datasets.store.DatasetStore`).
- ``--json`` (:data:`json_option`, parameter ``as_json``): print machine-readable JSON to stdout
  instead of a table.
- ``--out FILE`` (:func:`out_option`, parameter ``out``): write the result to a file whose suffix
  picks the format (``.csv``, ``.json`` or ``.parquet``; :func:`write_frame`).
- ``--push URL`` / ``--token`` (:func:`push_options`): send collected rows to a running ``hws serve``.
- ``--strict`` (:data:`strict_option`, parameter ``strict``): refuse queries outside the answering
  model's training domain instead of answering them with a warning.
- ``--ray ADDRESS`` (:func:`ray_option`, parameter ``ray_address``) and, for collectors, ``--on
  LABEL`` / ``--max-retries`` (:func:`ray_collect_options`): run the work on a Ray cluster
  (:mod:`hwsurrogate.cluster`); without ``--ray`` Ray is never imported.

This module imports click only, so ``hws --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "comma_ints",
    "comma_strings",
    "json_option",
    "out_option",
    "push_options",
    "data_version_option",
    "ray_collect_options",
    "ray_option",
    "store_option",
    "strict_option",
    "write_frame",
]

F = TypeVar("F", bound=Callable[..., Any])

STORE_HELP = (
    "Dataset store directory or s3://bucket/prefix URI (default: $HWSURROGATE_STORE or ./store; S3 credentials "
    "and endpoint from the AWS_* variables). Model caches and adapted devices live in the store directory, "
    "or for s3:// in $HWSURROGATE_LOCAL_DIR (default ./hws-local)."
)


def _store_location(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | str | None:
    """A directory stays a Path; an object-store URI (``s3://bucket/prefix``) stays a string."""
    if value is None:
        return value
    from hwsurrogate.settings import check_store_location, is_store_uri

    try:
        value = check_store_location(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    if is_store_uri(value):
        return value
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise click.BadParameter(f"{value!r} is a file, not a store directory", ctx=ctx, param=param)
    return path


def store_option(fn: F) -> F:
    """``--store DIR|URI`` -> ``store_path: Path | str | None`` (None: the default store)."""
    return click.option(
        "--store",
        "store_path",
        type=str,
        callback=_store_location,
        default=None,
        help=STORE_HELP,
    )(fn)


#: ``--data-version`` -> ``data_version: str | None``: read the store as a recorded training run did.
data_version_option = click.option(
    "--data-version",
    "data_version",
    default=None,
    metavar="TABLE=V,...",
    help="Read the store at these table versions (time travel), e.g. 'gemm=12,devices=3,_commits=2': "
    "the data_versions param of an MLflow run reproduces it. `hws data history` prints the current ones.",
)


#: ``--json`` -> ``as_json: bool``: print machine-readable JSON to stdout.
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


#: ``--strict`` -> ``strict: bool``: refuse out-of-domain queries (the service's ``"strict": true``).
strict_option = click.option(
    "--strict",
    "strict",
    is_flag=True,
    help="Refuse queries outside the model's training domain (default: answer them with a warning).",
)


def out_option(
    help: str = "Write the result to FILE (.csv, .json or .parquet, by its suffix) instead of printing it.",
) -> Callable[[F], F]:
    """``--out FILE`` -> ``out: Path | None``."""
    return click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)


def write_frame(frame: pl.DataFrame, out: Path) -> None:
    """Write ``frame`` to ``out`` as parquet, JSON (a list of row objects) or CSV, by the suffix."""
    if out.suffix == ".parquet":
        frame.write_parquet(out)
    elif out.suffix == ".json":
        out.write_text(json.dumps(frame.to_dicts(), indent=1, default=str))
    else:
        frame.write_csv(out)


def push_options(fn: F) -> F:
    """``--push URL`` -> ``push_url`` and ``--token`` -> ``token`` (default $HWSURROGATE_SERVICE_TOKEN)."""
    fn = click.option(
        "--token",
        envvar="HWSURROGATE_SERVICE_TOKEN",
        default=None,
        help="Bearer token for --push (default: $HWSURROGATE_SERVICE_TOKEN).",
    )(fn)
    return click.option(
        "--push",
        "push_url",
        metavar="URL",
        default=None,
        help="Send the rows to a running `hws serve` at URL instead of the local store.",
    )(fn)


def comma_ints(text: str, option: str) -> list[int]:
    """``"8,16, 32"`` -> ``[8, 16, 32]``; a usage error naming ``option`` otherwise."""
    values: list[int] = []
    for part in str(text).replace(",", " ").split():
        try:
            values.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not an integer", param_hint=option) from None
    if not values:
        raise click.BadParameter("needs at least one value", param_hint=option)
    return values


def comma_strings(text: str) -> list[str]:
    """``"fp32,fp64 bf16"`` -> ``["fp32", "fp64", "bf16"]``."""
    return [x for x in text.replace(",", " ").split() if x]


def ray_option(
    help: str = "Run on the Ray cluster at ADDRESS (HOST:PORT or auto; needs hwsurrogate[distributed]).",
) -> Callable[[F], F]:
    """``--ray ADDRESS`` -> ``ray_address: str | None``."""
    return click.option("--ray", "ray_address", metavar="ADDRESS", default=None, help=help)


def ray_collect_options(fn: F) -> F:
    """``--ray ADDRESS``, ``--on LABEL`` -> ``on``, ``--max-retries N`` -> ``max_retries`` for the collectors."""
    fn = click.option(
        "--max-retries",
        "max_retries",
        default=3,
        show_default=True,
        type=click.IntRange(min=0),
        help="With --ray: re-runs of a task whose node died (a failed measurement is not re-run).",
    )(fn)
    fn = click.option(
        "--on",
        "on",
        metavar="LABEL",
        default=None,
        help="With --ray: run only on nodes with this custom resource, e.g. gpu_type=H100 "
        "(ray start --resources '{\"gpu_type=H100\": 1}'); one unit per task.",
    )(fn)
    return ray_option(
        "Run the measurements as Ray tasks on the cluster at ADDRESS (HOST:PORT or auto); rows come "
        "back here and are written once (needs hwsurrogate[distributed])."
    )(fn)
