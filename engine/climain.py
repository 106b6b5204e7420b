"""One way to run a click command as a program: one-line `error: ...` and exit 1, tracebacks only with --debug."""
from __future__ import annotations

import sys

import click


def standalone(command: click.Command, argv: list[str] | None = None, prog_name: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        command.main(args=argv, prog_name=prog_name, standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 1
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return 1
    except Exception as e:  # noqa: BLE001 - the contract: one line, no traceback
        if "--debug" in argv:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"error: {msg}", err=True)
        return 1
