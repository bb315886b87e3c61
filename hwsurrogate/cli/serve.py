"""``hws serve``: run the prediction and dataset service with uvicorn."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from hwsurrogate.cli.options import store_option
from hwsurrogate.service.process_env import SERVER_ENV_DEFAULTS, server_environment

__all__ = ["SERVER_ENV_DEFAULTS", "serve", "server_environment"]

def _pins(values: tuple[str, ...]) -> dict[str, str]:
    """``--model-version TASK=VERSION`` values as {task: version}; a usage error names a bad one."""
    from hwsurrogate.surrogates.api import MODEL_NAMES

    pins: dict[str, str] = {}
    for value in values:
        task, sep, version = value.partition("=")
        if not sep or task not in MODEL_NAMES or not version.isdigit():
            raise click.BadParameter(
                f"{value!r}: expected TASK=VERSION with TASK one of {sorted(MODEL_NAMES)}",
                param_hint="--model-version",
            )
        pins[task] = version
    return pins


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 exposes it)."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@store_option
@click.option(
    "--token",
    envvar="HWSURROGATE_SERVICE_TOKEN",
    default=None,
    help="Bearer token required for writes (uploads, device registration). "
    "Default: $HWSURROGATE_SERVICE_TOKEN; if unset a random token is generated and printed.",
)
@click.option("--read-only", is_flag=True, help="Refuse every write (no token generated).")
@click.option(
    "--local-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="HWSURROGATE_LOCAL_DIR",
    default=None,
    help="Local folder for served-model caches and the few-shot registry (adapted devices) when --store is "
    "an s3:// URI (default: $HWSURROGATE_LOCAL_DIR or ./hws-local); a store directory holds them itself.",
)
@click.option(
    "--model-version",
    "model_versions",
    multiple=True,
    metavar="TASK=VERSION",
    help="Serve this registry version instead of the champion, e.g. --model-version gemm=3 (repeatable).",
)
@click.option(
    "--no-batching",
    is_flag=True,
    help="Call the model once per request instead of merging concurrent requests into one call.",
)
@click.option(
    "--preload-models",
    is_flag=True,
    help="Load the models during start-up, so the first prediction does not wait for them (a few "
    "seconds) and the server is ready only once they are. Default: at the first request needing one, "
    "which keeps a server that only moves datasets ~75 MB smaller (the models' frozen copies; the "
    "server never imports MLflow).",
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="uvicorn worker processes."
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def serve(
    host: str,
    port: int,
    store_path: Path | str | None,
    token: str | None,
    read_only: bool,
    local_dir: Path | None,
    model_versions: tuple[str, ...],
    no_batching: bool,
    preload_models: bool,
    workers: int,
    log_level: str,
) -> None:
    """Answer predictions and serve/accept datasets over HTTP (OpenAPI docs at /docs).

    Models (the registry's `champion` of each task, or the pinned versions) are loaded once, at
    the first request that needs one (or at start-up with --preload-models); a task without a
    registered model answers 503 until one is trained and the service restarted. Reads are open; writes need `Authorization: Bearer TOKEN`.

    The server process starts with MALLOC_ARENA_MAX=2 and
    _RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0 (less memory
    kept by the allocators under many readers) and OMP_WAIT_POLICY=PASSIVE (large batches stay
    fast when other work keeps the cores busy) unless the environment sets them.

    The store may be an S3 bucket (--store s3://bucket/prefix, credentials and endpoint from
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP);
    uploads, downloads, devices and predictions work the same, and several servers (e.g. one
    writer and --read-only readers) may share it. Local files then go to --local-dir.

    \b
    Example:
      hws serve --port 8000 --token "$(openssl rand -hex 16)"
      curl localhost:8000/v1/models
    """
    allocator = server_environment(os.environ)

    from hwsurrogate.service.config import BATCHING_ENV, MODEL_VERSIONS_ENV, PRELOAD_ENV
    from hwsurrogate.settings import check_store_location, get_settings

    pins = _pins(model_versions)
    if store_path is not None:
        os.environ["HWSURROGATE_STORE"] = str(store_path)
    else:  # the workers read $HWSURROGATE_STORE: refuse a bad one here, not in each worker's start-up
        try:
            check_store_location(get_settings(fresh=True).store)
        except ValueError as exc:
            raise click.BadParameter(f"$HWSURROGATE_STORE: {exc}", param_hint="--store") from None
    if local_dir is not None:
        os.environ["HWSURROGATE_LOCAL_DIR"] = str(local_dir)
    if read_only:
        os.environ.pop("HWSURROGATE_SERVICE_TOKEN", None)
    else:
        if not token:
            import secrets

            token = secrets.token_urlsafe(24)
            click.echo(f"no token configured: generated write token {token}", err=True)
            click.echo("  (pass --token or set HWSURROGATE_SERVICE_TOKEN to choose one)", err=True)
        if len(token) < 8:
            raise click.BadParameter("use at least 8 characters", param_hint="--token")
        os.environ["HWSURROGATE_SERVICE_TOKEN"] = token
    os.environ[MODEL_VERSIONS_ENV] = json.dumps(pins)
    os.environ[BATCHING_ENV] = "0" if no_batching else "1"
    os.environ[PRELOAD_ENV] = "1" if preload_models else "0"
    click.echo(f"hws serve: http://{host}:{port}  (docs: http://{host}:{port}/docs)", err=True)
    # the allocators read their settings at process start: uvicorn runs as a fresh process with them
    argv = [sys.executable, "-m", "uvicorn", "--factory", "hwsurrogate.service.app:create_app_from_env",
            "--host", host, "--port", str(port), "--workers", str(workers), "--log-level", log_level,
            "--no-access-log"]  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, {**os.environ, **allocator})
