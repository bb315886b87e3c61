"""A click group some of whose subcommands are imported only when they run.

Used where importing a command costs seconds (the benchmarks load scikit-learn, torch and
MLflow) or pulls heavy libraries into ``hws --help``. A lazy subcommand is a *loader*, a plain
function that imports and returns the command (so go-to-definition follows it), and its one-line
help, which ``--help`` shows without importing anything.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping

import click

__all__ = ["LazyGroup", "Loader"]

#: imports and returns a click command
Loader = Callable[[], click.Command]


class LazyGroup(click.Group):
    """A click group that also holds lazily imported subcommands; lists all of them in the order added."""

    def __init__(
        self, *args: object, lazy: Mapping[str, tuple[Loader, str]] | None = None, **kwargs: object
    ) -> None:
        self.lazy: dict[str, tuple[Loader, str]] = {}
        self._order: list[str] = []
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for name, (loader, short_help) in (lazy or {}).items():
            self.add_lazy_command(name, loader, short_help)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(cmd, name)
        self._remember(name or cmd.name or "")

    def add_lazy_command(self, name: str, loader: Loader, short_help: str) -> None:
        """Add subcommand ``name``: ``loader()`` imports it on first use; ``short_help`` is its help line."""
        self.lazy[name] = (loader, short_help)
        self._remember(name)

    def _remember(self, name: str) -> None:
        if name not in self._order:
            self._order.append(name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        known = [n for n in self._order if n in self.commands or n in self.lazy]
        return known + [n for n in self.commands if n not in known]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return self.commands.get(cmd_name)
        loader, _ = self.lazy[cmd_name]
        try:
            return loader()
        except (ImportError, AttributeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"

            @click.command(cmd_name, help=f"(unavailable: {reason})")
            def unavailable() -> None:
                raise click.ClickException(f"command {cmd_name!r} is not available in this build: {reason}")

            return unavailable

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Click's lookup; an unknown name gets "did you mean ..." with the closest commands."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            name = args[0] if args else ""
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            if not name or name.startswith("-") or not close:
                raise
            options = " or ".join(repr(c) for c in close)
            raise click.UsageError(f"No such command {name!r}. Did you mean {options}?", ctx) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but a lazy subcommand shows its stored help line instead of being imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is None:
                rows.append((name, self.lazy[name][1]))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
