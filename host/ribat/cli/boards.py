"""ribat boards: what is attached, and which of it runs ribat."""

from concurrent.futures import ThreadPoolExecutor

import click

from ribat import ports
from ribat.cli.common import console, echo_json, json_option
from ribat.device.client import NodeClient
from ribat.device.transport import Port, holders
from ribat.errors import NoAnswer, PortBusy, ProtocolMismatch, RibatError
from ribat.results import Board

PROBE_TIMEOUT_S = 0.5
NOTES = {
    NoAnswer: "no ribat node answers",
    ProtocolMismatch: "a ribat node speaking another protocol version",
}


def _probe(c: ports.Candidate) -> Board:
    """The port, and the ribat node there if one answers (why not, if none does)."""
    try:
        # a port another program holds is said so at once, not waited for
        with NodeClient(Port(c.port, name=c.name, wait_s=0)) as client:
            info = client.hello(timeout=PROBE_TIMEOUT_S)
    except PortBusy:
        note = "in use by " + (", ".join(holders(c.port)) or "another program")
    except RibatError as e:
        note = NOTES.get(type(e), str(e))
    else:
        return Board(c.name, c.port, c.label, info.name, info.partner, info.firmware,
                     info.revision, None)  # fmt: skip
    return Board(c.name, c.port, c.label, None, None, None, None, note)


@click.command()
@json_option("One JSON object per port (per line)")
def boards(as_json: bool) -> None:
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
    if as_json:
        echo_json(answers)
        return
    table = Table(box=None, header_style="bold")
    for column in ("PORT", "DEVICE", "BOARD", "NODE", "PARTNER", "FIRMWARE", ""):
        table.add_column(column)
    for b in answers:
        fw = f"{b.firmware} ({b.revision})" if b.firmware else ""
        device = b.device if b.device != b.port else ""
        table.add_row(b.port, device, b.description, b.node or "", b.partner or "", fw,
                      b.note or "")  # fmt: skip
    console().print(table)
