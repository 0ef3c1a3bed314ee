"""The one error convention of the three commands (``skelprep``, ``skeltrain``, ``skeleval``).

Every error that a user can fix (a bad option, a missing file, a malformed store, a config that
does not validate) is an ``InputError`` or one of its subclasses: the command prints one line,
``<prog> [<command>]: error: <message>``, on stderr and exits with ``EXIT_INPUT`` (2), as click
does for usage errors. Anything else is a bug: the traceback is shown and the exit code is
``EXIT_INTERNAL`` (1). Ctrl-C exits with 130 after the command had its chance to say what was saved.

This module imports nothing heavy, so ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import sys
from typing import Any

import click

EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "show_default": True}


class InputError(Exception):
    """Bad input a user can fix; the message is one line that names the file, key or option."""


def one_line(message: object) -> str:
    """A message folded onto one line (paths and reasons keep their words)."""
    return " ".join(str(message).split())


def _prefix(ctx: click.Context | None, root: str) -> str:
    """``prog`` or ``prog command`` of the context that failed."""
    names = []
    while ctx is not None:
        if ctx.info_name:
            names.append(ctx.info_name)
        ctx = ctx.parent
    names = list(reversed(names))
    if names:
        names[0] = root
    return " ".join(names) or root


class SkelkitGroup(click.Group):
    """A click group that turns usage errors and ``InputError`` into one line and exit 2."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        root = prog_name or self.name or "skelkit"
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        try:
            status = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx is not None else "")
            sys.exit(0)
        except click.exceptions.Exit as err:
            sys.exit(err.exit_code)
        except click.exceptions.Abort:
            click.echo(f"{root}: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.UsageError as err:
            click.echo(f"{_prefix(err.ctx, root)}: error: {one_line(err.format_message())}",
                       err=True)
            sys.exit(EXIT_INPUT)
        except click.ClickException as err:
            click.echo(f"{root}: error: {one_line(err.format_message())}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo(f"{root}: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        # Without standalone mode click returns the code of a ``ctx.exit(code)``.
        sys.exit(status if isinstance(status, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as err:
            # Raised in a subcommand's body: the prefix names that subcommand.
            root = ctx.find_root().info_name or self.name or "skelkit"
            prefix = f"{root} {ctx.invoked_subcommand}" if ctx.invoked_subcommand else root
            click.echo(f"{prefix}: error: {one_line(err)}", err=True)
            sys.exit(EXIT_INPUT)
