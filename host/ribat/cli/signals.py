"""ribat signals, ribat check: weak signals on a node (ribat.ops.signals)."""

import json
import time

import click

from ribat.cli.common import duration, open_node, pin_option, port_option, when
from ribat.ops import guard, signals


@click.group("signals", invoke_without_command=True)
@port_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object a convergence.")
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
        for c in found:
            click.echo(json.dumps(c))
        return
    if not found:
        click.echo(
            f"no convergence: no other partner reported what this node did (window {window} days)"
        )
        return
    for c in found:
        state = f"acknowledged {when(c['acked'])}" if c["acked"] else "PENDING"
        click.echo(
            f"{when(c['detected'])}  {c['partner']} ({c['by']}) {c['id']} and yours "
            f"{c['mine']}: the same indicator, first reported "
            f"{duration((now - c['first']) * 1000)} ago; {state}"
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
@click.option("--json", "as_json", is_flag=True, help="The answer as JSON.")
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
        click.echo(json.dumps(got))
        return
    for f in got["found"]:
        click.echo(f"{f['partner']} ({f['by']}) reported it in {f['id']}, {when(f['t'])}")
    if not got["found"]:
        click.echo("no other partner reported it within the window")
    click.echo(f"{got['left']} lookups left today", err=True)
