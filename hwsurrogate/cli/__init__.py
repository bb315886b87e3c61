"""The ``hws`` command line. Each sub-package owns its commands; they load on first use.

Run ``hws COMMAND --help`` for details of any command.
"""

from __future__ import annotations

import sys

import click

from hwsurrogate import __version__
from hwsurrogate.cli.lazy import LazyGroup
from hwsurrogate.errors import HwSurrogateError

#: command name -> ("module:attribute", one-line help). Imported only when the command runs,
#: so ``hws --help`` stays fast (torch and mlflow are not loaded for it).
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("hwsurrogate.cli.data:data", "Import, list, show and export datasets in the local store."),
    "collect": (
        "hwsurrogate.cli.collect:collect",
        "Measure on this machine: GEMM, DNN latency, fingerprint, FPGA.",
    ),
    "train": ("hwsurrogate.cli.train:train", "Train a surrogate, log it to MLflow and register it."),
    "bench": (
        "hwsurrogate.cli.bench:bench",
        "Run a benchmark against published results and print the table.",
    ),
    "adapt": (
        "hwsurrogate.cli.adapt:adapt",
        "Adapt a predictor to an unseen device from a few measurements.",
    ),
    "predict": (
        "hwsurrogate.cli.predict:predict",
        "Predict latency / GEMM runtime / FPGA resources from the CLI.",
    ),
    "serve": ("hwsurrogate.cli.serve:serve", "Start the HTTP prediction and dataset service."),
    "quickstart": (
        "hwsurrogate.cli.quickstart:quickstart",
        "Run the whole pipeline end to end on embedded defaults.",
    ),
}


@click.group(
    cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hws`` script: project errors become one clear line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="hws", standalone_mode=False)
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
