"""ribat signals, ribat check: weak signals on a node (ribat.ops.signals)."""

import time

import click

from ribat.cli.common import (
    duration,
    echo_json,
    json_option,
    open_node,
    pin_option,
    port_option,
    when,
)
from ribat.ops import guard, signals


@click.group("signals", invoke_without_command=True)
@port_option
@json_option("One JSON object a convergence")
@click.pass_context
def signals_group(ctx: click.Context, port: str | None, as_json: bool) -> None:
    """The convergences this node raised: another partner reported an indicator one of
    this node's bulletins names, within signals.window_days. Which indicator, neither node
    says: ask the partner with a request bulletin (`ribat post --kind request --ref ID`)."""
    if ctx.invoked_subcommand is not None:
        return
    found, window = signals.convergences(open_node(port))
    now = int(time.time())
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo(
            f"no convergence: no other partner reported what this node did (window {window} days)"
        )
        return
    for c in found:
        acked = c.acknowledged
        state = f"acknowledged {when(acked)}" if acked else "PENDING"
        click.echo(
            f"{when(c.detected)}  {c.partner} ({c.node}) {c.their_entry} and "
            f"yours {c.our_entry}: the same indicator, first reported "
            f"{duration(int(now - c.first_reported.timestamp()) * 1000)} ago; {state}"
        )


@signals_group.command("ack")
@port_option
@pin_option
def ack(port: str | None, pin: str | None) -> None:
    """Acknowledge the pending convergences (the board's button does too)."""
    client = open_node(port)
    with guard.unlocked(client, pin):
        n = signals.acknowledge(client)
    click.echo(f"{n} convergences acknowledged" if n else "no convergence was pending", err=True)


@click.command()
@port_option
@pin_option
@json_option("The answer as JSON")
@click.argument("indicator", metavar="KIND:VALUE")
def check(port: str | None, pin: str | None, as_json: bool, indicator: str) -> None:
    """Has another partner of the cell reported INDICATOR within the window? A lookup
    reports nothing to the cell; a node makes signals.lookups_per_day of them, each in its
    audit log (the kind and the outcome, never the value). Needs an unlocked node."""
    client = open_node(port)
    assert client.info is not None
    try:
        signals.parse(indicator, client.info.partner)
    except signals.BadIndicator as e:
        raise click.BadParameter(str(e), param_hint="INDICATOR") from None
    with guard.unlocked(client, pin):
        got = signals.check(client, indicator)
    if as_json:
        echo_json(got)
        return
    for f in got.reported_by:
        click.echo(f"{f.partner} ({f.node}) reported it in {f.entry}, {when(f.time)}")
    if not got.reported_by:
        click.echo("no other partner reported it within the window")
    click.echo(f"{got.lookups_left} lookups left today", err=True)
