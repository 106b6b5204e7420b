"""The `cross-compile` command (click). Registered in cli.py with
    from engine.crosscmd import cross_compile; cli.add_command(cross_compile)
and runnable alone as `python -m engine.crosscmd ...` (what `make arm64` does). Imports nothing heavy
until it runs."""
from __future__ import annotations

import json
import sys

import click

CPU_HELP = ("cortex-a57 (Jetson Nano, any ARMv8-A: the default), cortex-a78ae (Jetson Orin: adds ARMv8.2 sdot), "
            "cortex-a53, cortex-a72, cortex-a76, neoverse-n1, generic")


@click.command("cross-compile", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--target", default="aarch64", show_default=True, help="Target architecture (aarch64).")
@click.option("--cpu", default="cortex-a57", show_default=True, help=f"Board CPU: {CPU_HELP}.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--scalar", is_flag=True, help="Portable scalar kernels only (no NEON), for comparison.")
@click.option("--no-smoke", is_flag=True, help="Skip the qemu smoke test.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cross_compile(target: str, cpu: str, out_dir: str, scalar: bool, no_smoke: bool, as_json: bool) -> None:
    """Build the C backend for an ARM board into OUT: libmfe.so (the C API) with _mfe_native.py (a cffi
    ABI-mode loader for the Python engine on the board), the static standalone runner mfrun, the model
    and sample images, and a README saying what to copy and how to run it. When qemu-aarch64 is
    installed, mfrun runs once under it (CPU pinned) on the default model and sample images, and its
    logits hash must equal this machine's.

    Needs the Debian packages gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user (`make deps`).

    \b
    Example:
      python cli.py cross-compile --target aarch64 --cpu cortex-a57 -o build/arm64
      qemu-aarch64 -cpu cortex-a57 -L /usr/aarch64-linux-gnu build/arm64/mfrun \\
          build/arm64/default.mfe build/arm64/sample.npy --json
    """
    from engine import cross
    try:
        rep = cross.cross_compile(out_dir, target=target, cpu=cpu, isa="scalar" if scalar else "neon",
                                  smoke=not no_smoke, progress=lambda msg: click.echo(msg + " ...", err=True))
    except cross.CrossError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(rep))
        return
    click.echo(f"built     {target} ({cpu}, {rep['isa']} kernels) into {rep['out_dir']}")
    click.echo(f"files     {', '.join(rep['files'])}")
    click.echo(f"libmfe.so needs glibc >= {rep['libmfe_glibc']}; mfrun is static")
    click.echo(f"smoke     {rep['summary']}")
    click.echo(f"next      copy {out_dir} to the board and read its README")


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.crosscmd`: the command alone, with the CLI's one-line errors."""
    from engine.climain import standalone
    return standalone(cross_compile, argv, "cross-compile")


if __name__ == "__main__":
    sys.exit(main())
