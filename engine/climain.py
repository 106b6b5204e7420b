"""One way to run a click command as a program: one-line `error: ...` and exit 1, tracebacks only with --debug."""
from __future__ import annotations

import contextlib
import os
import sys
import traceback

import click


def writable(path: str, folder: bool = False) -> None:
    """Fail before any long work, with a one-line error, where `path` (a file, or with folder=True a folder)
    could not be written at the end: a file name is needed, and the nearest folder that exists must be
    writable (nothing is made here; the commands make missing folders when they write)."""
    if not folder and (not path or path.endswith(os.sep) or os.path.isdir(path)):
        raise click.ClickException(f"cannot write {path!r}: not a file name")
    where = os.path.abspath(path) if folder else os.path.dirname(os.path.abspath(path))
    while not os.path.exists(where):
        where = os.path.dirname(where)
    if not os.path.isdir(where) or not os.access(where, os.W_OK):
        why = "not a folder" if not os.path.isdir(where) else "not writable (permissions or a read-only file system)"
        raise click.ClickException(f"cannot write {path}: {where} is {why}")


def progressbar(label: str, iterable=None, length: int | None = None, show: bool = True):
    """click's progress bar on stderr (stdout stays for results and --json), or where show is False the
    iterable itself, drawing nothing."""
    return click.progressbar(iterable, length=length, label=label, file=sys.stderr) if show else contextlib.nullcontext(iterable)


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; 8.1 exits 0 with the help itself


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
    except NO_ARGS_IS_HELP as e:  # the bare program: its help, not an error
        click.echo(e.format_message())
        return 0
    except click.ClickException as e:
        if "--debug" in argv and e.__context__ is not None:  # a wrapped error: the traceback where it began
            root = e.__context__
            while root.__context__ is not None:
                root = root.__context__
            traceback.print_exception(root)
        click.echo(f"error: {e.format_message()}", err=True)
        return 1
    except Exception as e:  # noqa: BLE001 - the contract: one line, no traceback
        if "--debug" in argv:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"error: {msg}", err=True)
        return 1
