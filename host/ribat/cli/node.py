"""ribat status and ribat reset."""

import time
from typing import TYPE_CHECKING

import click

from ribat.cli.common import (
    console,
    duration,
    echo_json,
    json_option,
    open_node,
    port_option,
    size,
)
from ribat.results import NodeStatus

if TYPE_CHECKING:
    from ribat.device.client import NodeInfo


@click.command()
@port_option
@json_option("The status as JSON")
def status(port: str | None, as_json: bool) -> None:
    """Show a node's identity, health and link counters at a glance."""
    client = open_node(port)
    info = client.info
    assert info is not None
    got = NodeStatus.from_node(info, client.request("status"))
    if as_json:
        echo_json(got)
        return
    from rich.table import Table

    h = got.health
    rejected = sum(h.frames_rejected.values())
    causes = ", ".join(f"{n} {cause}" for cause, n in h.frames_rejected.items() if n)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("node", f"{info.name} ({info.partner}) · {info.board} · id {info.uid}")
    fallback = " [red](fallback: the active slot did not start)[/]" if info.fallback else ""
    table.add_row("firmware", f"{info.firmware} ({info.revision}), slot {info.slot}{fallback}")
    table.add_row("release", _release_line(info))
    table.add_row("up", f"{duration(h.uptime_ms)} since {h.reset_cause} reset")
    table.add_row("heap", f"{size(h.heap_free_bytes)} free, {size(h.heap_used_bytes)} used")
    table.add_row("flash", f"{size(h.flash_free_bytes)} free, {size(h.flash_used_bytes)} used")
    table.add_row("loop lag", f"{h.loop_lag_ms} ms")
    table.add_row(
        "link",
        f"{h.frames_in} frames in, {h.frames_out} out, "
        f"{rejected} rejected" + (f" ({causes})" if causes else ""),
    )
    temp = h.temperature_c
    table.add_row("temperature", "no sensor" if temp is None else f"{temp:.1f} °C")
    pending = got.alerts_pending
    if pending:
        oldest = min(a.received.timestamp() for a in pending)
        table.add_row(
            "alerts",
            f"[bold red]{len(pending)} pending[/], the oldest for "
            f"{duration(max(0, int(time.time() - oldest)) * 1000)} (`ribat watch`, `ribat ack`)",
        )
    if h.keys is not None:
        table.add_row("keys", h.keys)
        table.add_row("audit head", f"{h.audit_seq}:{h.audit_head}")
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
