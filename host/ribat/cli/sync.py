"""ribat sync: reconcile two nodes' journals through this host."""

import click

from ribat import errors
from ribat.cli.common import echo_json, json_option


def _tally(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())) or "nothing"


@click.command()
@click.option(
    "--port",
    "-p",
    "port_names",
    multiple=True,
    metavar="PORT",
    help="A node to sync (give two): serial device, or sim:NAME for a virtual board.",
)
@json_option("One JSON document, for scripts")
def sync(port_names: tuple[str, ...], as_json: bool) -> None:
    """Reconcile the journals of two nodes attached to this host.

    Each side gets the sealed entries it lacks from the other, checked as an import
    checks them, and witnesses the other's audit head. Cut at any point, a sync run
    again sends only what has not arrived. Exits 15 if a node's audit log was found
    truncated or rewritten.
    """
    from ribat import ports
    from ribat.device.client import connect
    from ribat.ops import sync as lib

    if len(port_names) != 2:
        raise click.UsageError("give two nodes: --port A --port B")
    first, second = (ports.resolve(name) for name in port_names)
    if first == second:
        raise click.UsageError(f"both --port name {first}: give two nodes")
    with connect(first) as a, connect(second) as b:
        report = lib.sync(a, b)
    if as_json:
        echo_json(report)
    else:
        for leg in report.legs:
            line = f"{leg.source} -> {leg.target}: "
            line += _tally(leg.outcomes) if leg.sent else "nothing to send"
            if leg.target_full:
                line += f" ({leg.target}'s journal is full: the rest stays with {leg.source})"
            click.echo(line)
        for w in report.witnessed:
            click.echo(f"{w.witness} witnessed {w.peer}'s audit head: {w.verdict}")
        for fp in report.forks:
            click.echo(f"fork: the two hold different entries at the head of {fp}")
    if report.alarms:
        raise errors.AuditBroken("; ".join(report.alarms))
