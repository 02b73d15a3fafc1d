"""ribat watch: the duty console: one node, unlocked for as long as it runs, its alerts,
the bulletins it gets, who acknowledged what, and its health, live."""

import contextlib
import select
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, TextIO

import click

from ribat.cli.common import ask_pin, clock, console, duration, pin_option, port_option, size
from ribat.cli.gateway import broker_address
from ribat.errors import DeviceError, RibatError, WrongPin
from ribat.ops import duty

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ribat.device.client import NodeClient
    from ribat.gateway.bridge import Gateway
    from ribat.results import Bulletin

RETRY_S = 3.0  # between two tries to reach a node that went away
LOG_LINES = 8  # the console's last lines kept on screen


class Console:
    """The loop: reach the node, unlock it, refresh, tell, take commands; reach it again
    whenever it goes (unplugged, restarted, the broker gone), for as long as it runs."""

    def __init__(self, port: str | None, pin: str, broker: str | None, plain: bool) -> None:
        self.port = port
        self.pin = pin
        self.broker = broker_address(broker) if broker else None
        self.plain = plain
        self.client: NodeClient | None = None
        self.view: duty.DutyView | None = None
        self.gateway: Gateway | None = None
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.opened: Bulletin | None = None  # the bulletin shown (a key asked for it)
        self.stopping = False
        self.lost_told = ""

    # -- telling -------------------------------------------------------------------------

    def tell(self, text: str, bell: bool = False) -> None:
        line = f"{clock(time.time())}  {text}"
        self.log.append(line)
        if self.plain:
            click.echo(("\a" if bell and sys.stdout.isatty() else "") + line)
        elif bell:
            sys.stdout.write("\a")
            sys.stdout.flush()

    def tell_change(self, c: duty.Change) -> None:
        item = c.item
        about = f"[{item.get('id')}] {item.get('ti', '')}"
        if c.kind == "alert":
            self.tell(f"ALERT {item['s']} from {item['by']} ({item['from']}): {about}", bell=True)
        elif c.kind == "bulletin":
            self.tell(f"{item['k']} ({item['s']}) from {item['by']} ({item['from']}): {about}")
        elif c.kind == "ack":
            self.tell(f"ACK {c.by} acknowledged {about} after {_ago(c.after_s)}")
        elif c.convergence is not None:
            v = c.convergence
            self.tell(
                f"CONVERGENCE {v.partner} ({v.node}) reported in {v.their_entry} what your "
                f"{v.our_entry} reports: ask them (post --kind request --ref {v.their_entry})",
                bell=True,
            )
        elif c.kind == "overdue":
            who = "not acknowledged here" if c.by == self.view_partner() else f"{c.by} silent"
            self.tell(f"OVERDUE {about}: {who} after {_ago(c.after_s)}", bell=True)

    def view_partner(self) -> str:
        return self.view.partner if self.view else ""

    # -- the node ------------------------------------------------------------------------

    def reach(self) -> bool:
        """Connect to the node and unlock it; False (and said once) if it is not there."""
        from ribat import ports
        from ribat.device.client import connect
        from ribat.ops import config, guard

        try:
            client = connect(ports.resolve(self.port))
        except (RibatError, OSError) as e:
            if str(e) != self.lost_told:
                self.tell(f"cannot reach the node: {e}; trying again every {RETRY_S:.0f} s")
                self.lost_told = str(e)
            return False
        try:
            guard.unlock(client, self.pin)
            values = config.values(client)
        except WrongPin:
            client.close()
            raise
        except (RibatError, OSError) as e:
            client.close()
            self.tell(f"the node did not unlock: {e}; trying again")
            return False
        info = client.info
        assert info is not None
        if self.view is None or self.view.me != info.name:
            self.view = duty.DutyView(info.name, info.partner or "")
        self.view.settings(values)
        self.client = client
        self.lost_told = ""
        self.tell(f"on watch: {info.name} ({info.partner}), unlocked")
        if self.broker is not None and self.gateway is None:
            self._bridge()
        return True

    def _bridge(self) -> None:
        """Bridge the node to the broker through the port this console holds (a gateway
        would open and close it each round, which ends the session)."""
        from ribat.gateway.bridge import Gateway

        assert self.broker is not None
        host, port = self.broker
        self.gateway = Gateway(
            lambda: contextlib.nullcontext(self.client),  # type: ignore[arg-type, return-value]
            host, port, log=self.tell,
        )  # fmt: skip
        self.tell(f"bridged to {host}:{port}")

    def lose(self, why: object) -> None:
        self.tell(f"lost the node: {why}; reconnecting")
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        self.client = None

    def step(self) -> None:
        """One refresh (and a gateway round, bridged)."""
        assert self.client is not None and self.view is not None
        try:
            if self.gateway is not None:
                self.gateway.round()
            for change in self.view.refresh(self.client):
                self.tell_change(change)
        except (RibatError, OSError) as e:
            self.lose(e)

    # -- commands: keys on a terminal, lines from a pipe -------------------------------------

    def command(self, text: str) -> None:
        words = text.split()
        if not words:
            return
        verb, args = words[0].lower(), words[1:]
        if verb in ("q", "quit"):
            self.stopping = True
        elif verb in ("a", "ack"):
            self.acknowledge(args)
        elif verb in ("o", "open", "show") and args:
            self.open(args[0])
        elif verb.isdigit():
            self.open(verb)
        else:
            self.tell(f"unknown command {text!r}: ack [ID], show ID|N, quit")

    def acknowledge(self, ids: list[str]) -> None:
        from ribat.ops import journal

        if self.client is None or self.view is None:
            self.tell("not acknowledged: the node is not reachable now")
            return
        targets = ids or [i["id"] for i in self.view.pending()]
        if not ids and self.view.signals_pending:
            from ribat.ops import signals

            try:
                n = signals.acknowledge(self.client)
            except (RibatError, OSError) as e:
                self.lose(e)
                return
            self.tell(f"{n} convergences acknowledged")
        elif not targets:
            self.tell("no alert is pending")
        for ident in targets:
            try:
                out = journal.ack(self.client, ident)
            except DeviceError as e:
                self.tell(f"{ident}: {e}")
                continue
            except (RibatError, OSError) as e:
                self.lose(e)
                return
            self.tell(f"{ident} acknowledged" + (" already" if out.get("already") else ""))
            if ident in self.view.items:
                self.view.items[ident]["acked"] = True

    def open(self, which: str) -> None:
        from ribat.ops import journal

        if self.client is None or self.view is None:
            return
        ident = which
        if which.isdigit():  # the n-th of the screen's recent bulletins, newest first
            recent = list(reversed(self.view.items))
            if not 1 <= int(which) <= len(recent):
                self.tell(f"no bulletin {which} on screen")
                return
            ident = recent[int(which) - 1]
        try:
            self.opened = journal.show(self.client, ident)
        except DeviceError as e:
            self.tell(f"{ident}: {e}")
            return
        except (RibatError, OSError) as e:
            self.lose(e)
            return
        if self.plain:
            o = self.opened
            click.echo(f"{o.id} {o.kind} ({o.severity}) from {o.node} ({o.partner}): {o.title}")
            click.echo(o.body)
            self.opened = None

    # -- the screen ----------------------------------------------------------------------

    def screen(self) -> "RenderableType":
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        now = time.time()
        parts: list[RenderableType] = []
        view, h = self.view, (self.view.health if self.view else {})
        state = "[green]unlocked, on watch[/]" if self.client else "[red]not reachable[/]"
        head = f"[bold]{view.me} ({view.partner})[/] · {state}" if view else state
        if h:
            head += (
                f" · up {duration(h.get('uptime_ms', 0))} · heap {size(h.get('heap_free', 0))}"
                f" free · flash {size(h.get('flash_free', 0))} free · lag "
                f"{h.get('loop_lag_ms', 0)} ms"
            )
        if self.gateway is not None:
            head += f" · broker: {self.gateway.counters.rounds} rounds"
        parts.append(Text.from_markup(head))
        if view:
            alerts = Table(title="alerts", title_justify="left", box=None, pad_edge=False)
            for col in ("", "severity", "from", "title", "waited", "acknowledged by"):
                alerts.add_column(col)
            for a in reversed(view.incoming(now)[-10:]):
                mark = "[red]OVERDUE[/]" if a["overdue"] else "[yellow]PENDING[/]"
                alerts.add_row(
                    mark if a["pending"] else "ok", a["s"], a["by"], a.get("ti", ""),
                    _ago(a["age_s"]), ", ".join(x["by"] for x in a["acks"]) or "-",
                )  # fmt: skip
            for a in reversed(view.outgoing(now)[-5:]):
                answers = "; ".join(
                    f"{x['partner']} " + (
                        ", ".join(x["by"]) + f" after {_ago(x['after_s'])}" if x["by"]
                        else ("[red]OVERDUE[/] " if x["overdue"] else "waiting ")
                        + _ago(x["after_s"])
                    )
                    for x in a["answers"]
                )  # fmt: skip
                alerts.add_row("sent", a["s"], "you", a.get("ti", ""), "", answers or "-")
            parts.append(alerts)
            recent = Table(title="bulletins", title_justify="left", box=None, pad_edge=False)
            for col in ("#", "time", "from", "kind", "severity", "title", "acknowledged by"):
                recent.add_column(col)
            for n, item in enumerate(reversed(list(view.items.values())[-9:]), 1):
                recent.add_row(
                    str(n), clock(item["t"]), item["by"], item["k"], item["s"],
                    item.get("ti", ""), ", ".join(x["by"] for x in item["acks"]) or "-",
                )  # fmt: skip
            parts.append(recent)
            if view.convergences:
                signals = Table(title="convergences", title_justify="left", box=None,
                                pad_edge=False)  # fmt: skip
                for col in ("", "partner", "their bulletin", "yours", "first report"):
                    signals.add_column(col)
                for c in reversed(view.convergences[-5:]):
                    signals.add_row(
                        "ok" if c.acknowledged else "[yellow]PENDING[/]", f"{c.partner} {c.node}",
                        c.their_entry, c.our_entry, _ago(now - c.first_reported.timestamp()),
                    )  # fmt: skip
                parts.append(signals)
        if self.opened is not None:
            o = self.opened
            title = f"{o.id} · {o.title} · from {o.node}"
            parts.append(Panel(o.body or "", title=title, width=80))
        parts.append(Text("\n".join(self.log), style="dim"))
        parts.append(
            Text("a acknowledge the pending alerts · 1-9 open a bulletin · q quit", "bold")
        )
        return Group(*parts)

    # -- the loop ------------------------------------------------------------------------

    def run(self, interval: float, seconds: float | None) -> None:
        end = time.monotonic() + seconds if seconds is not None else None
        keys = _Keys(sys.stdin)
        live = None
        if not self.plain:
            from rich.live import Live

            live = Live(console=console(), auto_refresh=False, screen=False)
            live.start()
        try:
            with keys:
                while not self.stopping and (end is None or time.monotonic() < end):
                    if self.client is not None or self.reach():
                        self.step()
                    if live is not None:
                        live.update(self.screen(), refresh=True)
                    wait = interval if self.client is not None else RETRY_S
                    if end is not None:
                        wait = max(0.0, min(wait, end - time.monotonic()))
                    for text in keys.read(wait):
                        if self.opened is not None and not self.plain:
                            self.opened = None  # any key closes the bulletin shown
                            continue
                        self.command(text)
        finally:
            if live is not None:
                live.stop()
            if self.gateway is not None:
                self.gateway.close()
            if self.client is not None:
                with contextlib.suppress(Exception):
                    from ribat.ops import guard

                    guard.lock(self.client)
                self.client.close()


class _Keys:
    """Commands from stdin: single keys on a terminal (no Enter), lines from a pipe."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.saved: list | None = None
        self.buf = b""
        self.closed = False

    def __enter__(self) -> "_Keys":
        if self.tty:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.stream.fileno())
            tty.setcbreak(self.stream.fileno())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> list[str]:
        """What was typed within timeout: keys (a terminal) or whole lines (a pipe)."""
        import os

        if self.closed:
            time.sleep(timeout)
            return []
        try:
            fd = self.stream.fileno()
            ready, _, _ = select.select([fd], [], [], timeout)
        except (ValueError, OSError):  # no stdin at all
            self.closed = True
            time.sleep(timeout)
            return []
        if not ready:
            return []
        got = os.read(fd, 1024)
        if not got:
            self.closed = True  # end of input: watch on, take no more commands
            return []
        if self.tty:
            return [chr(b) for b in got if chr(b).isprintable()]
        self.buf += got
        *lines, self.buf = self.buf.split(b"\n")
        return [line.decode(errors="replace").strip() for line in lines]


def _ago(seconds: float) -> str:
    return duration(max(0, int(seconds)) * 1000)


@click.command()
@port_option
@pin_option
@click.option(
    "--broker",
    envvar="RIBAT_BROKER",
    metavar="URL",
    help="Also bridge the node to this MQTT broker (mqtt://HOST:PORT), as `ribat gateway`.",
)
@click.option(
    "--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.1), metavar="S",
    help="Seconds between two looks at the node.",
)  # fmt: skip
@click.option(
    "--duration", "seconds", type=click.FloatRange(min=0), metavar="S",
    help="Stop after S seconds (default: run until q or Ctrl-C).",
)  # fmt: skip
@click.option(
    "--plain", is_flag=True,
    help="One line per event instead of a screen (the default when output is no terminal).",
)  # fmt: skip
def watch(
    port: str | None,
    pin: str | None,
    broker: str | None,
    interval: float,
    seconds: float | None,
    plain: bool,
) -> None:
    """The duty console: unlock the node and keep it on watch, showing its alerts (from
    any link), the bulletins it gets, who acknowledged each, and its health; ring the
    terminal's bell on a new alert and when one goes overdue.

    On a terminal, keys: a acknowledges every pending alert (as the node's button does),
    1-9 open a bulletin of the list, q quits. From a pipe, lines: ack [ID], show ID, quit.
    It holds the port and the session while it runs, and reconnects when the node or
    the broker comes back.
    """
    pin = ask_pin(pin)
    plain = plain or not sys.stdout.isatty()
    Console(port, pin, broker, plain).run(interval, seconds)
