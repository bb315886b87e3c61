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

__all__ = ["LazyGroup", "Loader", "check_defaults"]

#: imports and returns a click command
Loader = Callable[[], click.Command]


def check_defaults(ctx: click.Context, name: str | None, cmd: click.Command | None) -> None:
    """Refuse ``default_map`` keys for ``cmd`` that name neither one of its options nor (for a group)
    one of its subcommands, naming the command path and the closest valid key."""
    section = (ctx.default_map or {}).get(name) if name else None
    if cmd is None or section is None:
        return
    path = f"{ctx.command_path} {name}".split(" ", 1)[-1]
    if not isinstance(section, Mapping):
        raise click.ClickException(f"HWSURROGATE_CLI_DEFAULTS: {path!r} must map option names to values")
    valid = {p.name for p in cmd.params if p.name}
    if isinstance(cmd, click.Group):
        valid |= set(cmd.list_commands(ctx))
    for key in section:
        if key not in valid:
            close = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(valid))}"
            what = "option or subcommand" if isinstance(cmd, click.Group) else "option"
            raise click.ClickException(f"HWSURROGATE_CLI_DEFAULTS: {path!r} has no {what} {key!r}{hint}")


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
        """Click's lookup; an unknown name gets "did you mean ..." with the closest commands.

        Defaults from ``HWSURROGATE_CLI_DEFAULTS`` (click's ``default_map``) for the resolved
        command are checked here: a key that names no subcommand or option is an error, never
        silently ignored (only the commands actually run are checked, so nothing extra is imported).
        """
        try:
            resolved = super().resolve_command(ctx, args)
            check_defaults(ctx, *resolved[:2])
            return resolved
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
