"""ribat status and ribat reset."""

import json
import time
from typing import TYPE_CHECKING

import click

from ribat import codec
from ribat.cli.common import console, duration, open_node, port_option, size

if TYPE_CHECKING:
    from ribat.device.client import NodeInfo


@click.command()
@port_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw snapshot as JSON.")
def status(port: str | None, as_json: bool) -> None:
    """Show a node's identity, health and link counters at a glance."""
    client = open_node(port)
    info = client.info
    assert info is not None
    snap = client.request("status")
    if as_json:
        click.echo(json.dumps({"node": vars(info), "status": snap}, indent=2))
        return
    from rich.table import Table

    rejected = snap.get("rx_rejected") or []
    causes = ", ".join(f"{n} {codec.CAUSES[i]}" for i, n in enumerate(rejected) if n)
    temp = snap.get("temp_c")
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("node", f"{info.name} ({info.partner}) · {info.board} · id {info.uid}")
    fallback = " [red](fallback: the active slot did not start)[/]" if info.fallback else ""
    table.add_row("firmware", f"{info.firmware} ({info.revision}), slot {info.slot}{fallback}")
    table.add_row("release", _release_line(info))
    table.add_row("up", f"{duration(snap['uptime_ms'])} since {snap['reset_cause']} reset")
    table.add_row("heap", f"{size(snap['heap_free'])} free, {size(snap['heap_used'])} used")
    table.add_row("flash", f"{size(snap['flash_free'])} free, {size(snap['flash_used'])} used")
    table.add_row("loop lag", f"{snap['loop_lag_ms']} ms")
    table.add_row(
        "link",
        f"{snap['rx_ok']} frames in, {snap['tx']} out, "
        f"{sum(rejected)} rejected" + (f" ({causes})" if causes else ""),
    )
    table.add_row("temperature", "no sensor" if temp is None else f"{temp:.1f} °C")
    pending = snap.get("alerts") or []
    if pending:
        oldest = min(received for _, received in pending)
        table.add_row(
            "alerts",
            f"[bold red]{len(pending)} pending[/], the oldest for "
            f"{duration(max(0, int(time.time()) - oldest) * 1000)} (`ribat watch`, `ribat ack`)",
        )
    if "keys" in snap:
        table.add_row("keys", snap["keys"])
        table.add_row("audit head", f"{snap['audit_seq']}:{snap['audit_head']}")
    if info.config_error:
        table.add_row("config", f"[red]{info.config_error}[/]")
    console().print(table)


def _release_line(info: "NodeInfo") -> str:
    """Where the node stands with signed releases (ribat.deploy.update)."""
    if info.floor is None:
        return "unprovisioned: any firmware deploys through its REPL"
    parts = [f"takes releases newer than {info.floor}"]
    if info.trial is not None:
        parts.append(f"[yellow]on trial (start {info.trial}), unconfirmed[/]")
    if info.reverted:
        r = info.reverted
        parts.append(
            f"[red]{r['version']} went back to {r['back_to']} after {r['starts']} starts[/]"
        )
    return "; ".join(parts)


@click.command()
@port_option
@click.option(
    "--hard",
    is_flag=True,
    help="A hard reset (the chip restarts) instead of a soft one (MicroPython restarts).",
)
def reset(port: str | None, hard: bool) -> None:
    """Restart a node, and wait until it answers again."""
    client = open_node(port)
    assert client.info is not None
    client.request("reset", hard=hard)
    info = client.wait_ready(not_boot=client.info.boot)
    click.echo(
        f"{info.name} restarted and answers (firmware {info.firmware}, slot {info.slot})", err=True
    )
