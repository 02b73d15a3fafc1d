"""ribat install: MicroPython onto a bare board, through its family's own tools."""

import subprocess
import sys
from pathlib import Path

import click

from ribat.cli.common import progress_bar
from ribat.errors import DeployError


@click.command()
@click.option(
    "--board",
    "-b",
    required=True,
    type=click.Choice(["pico", "pico-w", "esp32", "esp32-spiram", "esp32s3-spiram"]),
    help="The board's family.",
)
@click.option("--port", "-p", metavar="PORT", help="The ESP32's serial port (esptool's).")
@click.option(
    "--firmware",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A MicroPython image (.uf2, .bin) instead of the release ribat pins.",
)
@click.option(
    "--drive",
    type=click.Path(file_okay=False, path_type=Path),
    help="The RP2040's BOOTSEL drive, if it is not mounted where ribat looks.",
)
@click.option("--dry-run", is_flag=True, help="Print what it would do and run, do nothing.")
def install(
    board: str, port: str | None, firmware: Path | None, drive: Path | None, dry_run: bool
) -> None:
    """Put MicroPython on a board that has none (then `ribat flash` deploys ribat).

    A Pico: hold BOOTSEL while plugging it in; its drive (RPI-RP2) takes the UF2 image, or
    picotool does. An ESP32: esptool erases it and writes the image over --port.
    """
    from ribat.deploy import install as lib

    plan = lib.plan(board, port, firmware, drive)
    if dry_run:
        for line in plan.describe():
            click.echo(line)
        return
    with progress_bar("downloading") as progress:
        lib.fetch(plan, progress)
    if plan.copy_to is not None:
        with progress_bar("copying") as progress:
            lib.copy_uf2(plan.image, plan.copy_to, progress)
        click.echo(
            f"✓ MicroPython copied to {plan.copy_to}: the board restarts into it; "
            "`ribat boards` lists it, then `ribat flash`",
            err=True,
        )
        return
    for command in plan.commands:
        click.echo(f"→ {' '.join(command)}", err=True)
        done = subprocess.run(command)
        if done.returncode != 0:
            raise DeployError(
                f"{command[0] if command[0] != sys.executable else 'esptool'} failed "
                f"(exit {done.returncode}): see its output above"
            )
    click.echo(f"✓ MicroPython {plan.image.name} on the board: then `ribat flash`", err=True)
