"""A click group whose subcommands are imported on first use, so ``--help`` stays fast."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use from ``lazy`` (name -> (target, help))."""

    def __init__(
        self, *args: object, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return None
        target, _ = self.lazy[cmd_name]
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"

            @click.command(cmd_name, help=f"(unavailable: {reason})")
            def _unavailable() -> None:
                raise click.ClickException(f"command {cmd_name!r} is not available in this build: {reason}")

            return _unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in self.lazy.items()])
