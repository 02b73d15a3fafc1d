"""ribat flash: deploy the firmware."""

from pathlib import Path

import click

from ribat import deploy, ports
from ribat.cli.common import plural, progress_bar, say, size
from ribat.device.transport import named
from ribat.errors import DeployError, RibatError

OK = click.style("✓", fg="green")


@click.command()
@click.option(
    "--port",
    "-p",
    "ports_given",
    metavar="PORT",
    multiple=True,
    help="Serial device, or sim:NAME for a virtual board; repeat it to roll a release out "
    "to several nodes, one after the other. Default: the only board found.",
)
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
@click.option(
    "--bundle",
    "bundle_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A signed release (`ribat release build` and `sign`): the only firmware a "
    "provisioned node takes, sent over its protocol, resumable, started on trial.",
)
@click.option(
    "--confirm",
    is_flag=True,
    help="Confirm the release once it answers, rather than wait for the node to confirm "
    "it itself; alone, confirm a release that runs on trial.",
)
def flash(
    ports_given: tuple[str, ...],
    board: str | None,
    dry_run: bool,
    source: Path | None,
    bundle_file: Path | None,
    confirm: bool,
) -> None:
    """Deploy the ribat firmware onto a board that runs MicroPython.

    An unprovisioned board takes the firmware through its REPL: only files whose hash on
    the board differs are sent; the new firmware goes into the slot that is not running
    and becomes active in one atomic step, so an interrupted deploy leaves the board
    running what it ran before. A provisioned node is sealed: it takes signed releases
    only (--bundle), each on trial until it confirms, going back by itself if it does not.
    """
    paths = [ports.resolve(p) for p in ports_given] or [ports.resolve(None)]
    if len(set(paths)) != len(paths):
        raise click.UsageError("a node is named twice in --port")
    if bundle_file is not None:
        if source is not None or board is not None or dry_run:
            raise click.UsageError(
                "--bundle carries its builds: no --source, --board or --dry-run"
            )
        _release(paths, bundle_file, confirm)
        return
    if confirm:
        for path in paths:
            _confirm(path)
        return
    if len(paths) > 1:
        raise click.UsageError("several --port are for a release (--bundle) only")
    path = paths[0]
    with progress_bar("sending") as progress:
        result = deploy.deploy(
            path, board, source, dry_run, progress, step=lambda message: say(f"→ {message}")
        )
    plan = result.plan
    if dry_run:
        _show_plan(plan)
        return
    if plan.up_to_date:
        say(
            f"{OK} {named(path)} already runs firmware {result.firmware} (slot {plan.slot}), "
            f"every file checked on the node: nothing sent, in {result.seconds:.2f} s"
        )
        return
    files = len(plan.transfer) + len(plan.copy)
    say(
        f"{OK} firmware {result.firmware} runs from slot {plan.slot} on {named(path)}: "
        f"{plural(files, 'file')} written ({len(plan.transfer)} sent, {size(result.sent_bytes)}), "
        f"{len(plan.remove)} removed, in {result.seconds:.2f} s"
    )


def _release(paths: list[str], bundle_file: Path, confirm: bool) -> None:
    from ribat.deploy import bundle, update

    release = bundle.read(bundle_file)

    def done(o: update.Outcome) -> None:
        resumed = f", resumed at byte {o.resumed_at}" if o.resumed_at else ""
        say(
            f"{OK} {named(o.path)}: release {o.version} (was {o.previous}) confirmed by the "
            f"{o.confirmed_by}; {size(o.sent_bytes)} sent{resumed}, in {o.seconds:.1f} s"
        )

    for n, path in enumerate(paths):
        with progress_bar("sending") as progress:
            try:
                update.rollout([path], release, confirm, progress,
                               lambda message: say(f"→ {message}"), done)  # fmt: skip
            except RibatError:
                if len(paths) > 1:
                    left = ", ".join(map(named, paths[n + 1 :])) or "none"
                    say(f"✗ the rollout stops at {named(path)}; not updated: {left}")
                raise


def _confirm(path: str) -> None:
    from ribat.deploy import update

    info = update.confirm_running(path)
    if info.trial is None:
        say(f"{OK} {named(path)} runs release {info.firmware}, confirmed")
    else:
        raise DeployError(f"{named(path)} still runs {info.firmware} on trial: confirm again")


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
