"""ribat flash: deploy the firmware."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ribat import deploy, ports
from ribat.cli.common import ask_pin, console, pin_option, port_option, size

OK = click.style("✓", fg="green")

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


@click.command()
@port_option
@click.option(
    "--board",
    "-b",
    metavar="BOARD",
    help="Board definition to deploy for (default: the one the board reports).",
)
@click.option("--dry-run", is_flag=True, help="Show what would change, change nothing.")
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Firmware tree to deploy instead of the one shipped with ribat.",
)
@pin_option
def flash(
    port: str | None, board: str | None, dry_run: bool, source: Path | None, pin: str | None
) -> None:
    """Deploy the ribat firmware onto a board that runs MicroPython.

    Only files whose hash on the board differs are sent; the new firmware goes into the
    slot that is not running and becomes active in one atomic step, so an interrupted
    deploy leaves the board running what it ran before. A provisioned node's REPL is
    sealed: it opens for the deploy in an unlocked session (the operator PIN).
    """
    path = ports.resolve(port)
    # rich only for the progress bar on a terminal: it costs a third of our start-up
    bar = _progress_bar(console(stderr=True)) if sys.stderr.isatty() else None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.start()
            bar.update(bar.task_ids[0], completed=done, total=total)

    try:
        result = deploy.deploy(
            path, board, source, dry_run, progress,
            step=lambda message: say(f"→ {message}"), pin=lambda: ask_pin(pin),
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.stop()
    plan = result.plan
    if dry_run:
        _show_plan(plan)
        return
    if plan.up_to_date:
        say(
            f"{OK} {path} already runs firmware {result.firmware} (slot {plan.slot}), "
            f"every file checked on the node: nothing sent, in {result.seconds:.2f} s"
        )
        return
    files = len(plan.transfer) + len(plan.copy)
    say(
        f"{OK} firmware {result.firmware} runs from slot {plan.slot} on {path}: "
        f"{files} files written ({len(plan.transfer)} sent, {size(result.sent_bytes)}), "
        f"{len(plan.remove)} removed, in {result.seconds:.2f} s"
    )


def say(message: str) -> None:
    click.echo(message, err=True)


def _progress_bar(out: "Console") -> "Progress":
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(
        TextColumn("  sending"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=out,
        transient=True,
    )
    bar.add_task("send", total=None)
    return bar


def _show_plan(plan: deploy.Plan) -> None:
    if plan.up_to_date:
        click.echo(f"up to date: slot {plan.slot} already holds this firmware; nothing to send")
        return
    for label, paths in (
        ("send", plan.transfer),
        ("copy on board", plan.copy),
        ("unchanged", plan.keep),
        ("remove", plan.remove),
    ):
        for p in paths:
            click.echo(f"{label:>14}  /fw/{plan.slot}/{p}")
    if plan.loader:
        click.echo(f"{'send':>14}  /main.py (loader)")
    if plan.switch:
        click.echo(f"then switch the active slot to {plan.slot}")
