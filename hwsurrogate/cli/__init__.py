"""The ``hws`` command line: one module per verb, shared options in :mod:`.options`.

Each verb module defines its commands directly and imports only click at module level (torch,
MLflow, scikit-learn and polars are imported inside the commands), so ``hws --help`` and
``hws VERB --help`` stay fast. ``hws predict`` is the one verb loaded on first use: its module
imports polars and the task contract at import time.

Run ``hws COMMAND --help`` for details of any command.
"""

from __future__ import annotations

import sys

import click

from hwsurrogate import __version__
from hwsurrogate.cli.adapt import adapt
from hwsurrogate.cli.bench import bench
from hwsurrogate.cli.collect import collect
from hwsurrogate.cli.data import data
from hwsurrogate.cli.lazy import LazyGroup, check_defaults
from hwsurrogate.cli.predict import predict
from hwsurrogate.cli.quickstart import quickstart
from hwsurrogate.cli.serve import serve
from hwsurrogate.cli.train import train
from hwsurrogate.cli.tune import tune
from hwsurrogate.errors import HwSurrogateError

__all__ = ["cli", "main"]


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="hws")
def cli() -> None:
    """hwsurrogate: how fast, how power-hungry and how big ML work will be on hardware.

    \b
    Typical flow:
      hws data import all          import the public data under $HWSURROGATE_DATA_DIR
      hws collect gemm             measure GEMMs on this machine
      hws train gemm               train a surrogate (tracked in MLflow)
      hws serve                    answer queries over HTTP
      hws quickstart               all of the above with embedded defaults

    The store lives in ./store (HWSURROGATE_STORE or --store to change it); MLflow uses
    sqlite:///mlflow.db with artifacts in ./mlruns unless MLFLOW_TRACKING_URI is set.
    """


cli.add_command(data)
cli.add_command(collect)
cli.add_command(train)
cli.add_command(bench)
cli.add_command(adapt)
cli.add_command(predict)
cli.add_command(serve)
cli.add_command(quickstart)
cli.add_command(tune)


def _default_map() -> dict[str, object] | None:
    """Option defaults from the YAML/JSON file named by ``HWSURROGATE_CLI_DEFAULTS`` (click's
    ``default_map``: nested by command, e.g. ``{"train": {"gemm": {"max_iter": 50}}}``)."""
    import os

    path = os.environ.get("HWSURROGATE_CLI_DEFAULTS")
    if not path:
        return None
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"HWSURROGATE_CLI_DEFAULTS={path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise click.ClickException(
            f"HWSURROGATE_CLI_DEFAULTS={path}: expected a mapping of command -> options"
        )
    with click.Context(cli, info_name="hws", default_map={"hws": loaded}) as ctx:
        check_defaults(ctx, "hws", cli)  # top-level keys; deeper ones when their command runs
    return loaded


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hws`` script: project errors become one clear line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="hws", standalone_mode=False, default_map=_default_map())
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except HwSurrogateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
