"""ribat boards: what is attached, and which of it runs ribat."""

from concurrent.futures import ThreadPoolExecutor

import click

from ribat import ports
from ribat.cli.common import console
from ribat.device.client import NodeClient
from ribat.device.transport import Port
from ribat.errors import NoAnswer, PortBusy, ProtocolMismatch, RibatError

PROBE_TIMEOUT_S = 0.5
NOTES = {
    NoAnswer: "no ribat node answers",
    PortBusy: "in use by another program",
    ProtocolMismatch: "a ribat node speaking another protocol version",
}


def _probe(candidate: ports.Candidate) -> tuple[str, str, str, str]:
    """(node name, partner, firmware, note) of the ribat node there, if one answers."""
    try:
        with NodeClient(Port(candidate.port)) as client:
            info = client.hello(timeout=PROBE_TIMEOUT_S)
    except RibatError as e:
        return "", "", "", NOTES.get(type(e), str(e))
    return info.name, info.partner, f"{info.firmware} ({info.revision})", ""


@click.command()
def boards() -> None:
    """List serial ports that may be MicroPython boards and the running virtual boards,
    with the name, partner and firmware of each ribat node among them."""
    from rich.table import Table

    found = ports.candidates()
    if not found:
        click.echo(
            "no boards found: plug one in, or start a virtual one with `ribat sim start`", err=True
        )
        return
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(_probe, found))
    table = Table(box=None, header_style="bold")
    for column in ("PORT", "BOARD", "NODE", "PARTNER", "FIRMWARE", ""):
        table.add_column(column)
    for candidate, (name, partner, fw, note) in zip(found, answers, strict=True):
        table.add_row(candidate.port, candidate.label, name, partner, fw, note)
    console().print(table)
