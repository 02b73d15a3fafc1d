"""What the command modules share: the --port option, opening a node, and formatting."""

import datetime
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ribat import ports
from ribat.device.client import NodeClient, connect

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem
    from rich.console import Console
    from rich.progress import Progress

F = TypeVar("F", bound=Callable[..., Any])


def complete_port(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> "list[CompletionItem]":
    """Shell completion of --port: the boards `ribat boards` would list, as --port takes
    them (sim:NAME for a running virtual board)."""
    from click.shell_completion import CompletionItem

    from ribat import ports

    names = [c.name for c in ports.candidates()]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_sim(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> "list[CompletionItem]":
    """Shell completion of a virtual board's name."""
    from click.shell_completion import CompletionItem

    from ribat import sim

    names = [s.name for s in sim.list_sims()]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def port_option(f: F) -> F:
    return click.option(
        "--port",
        "-p",
        metavar="PORT",
        shell_complete=complete_port,
        help="Serial device, or sim:NAME for a virtual board. Default: the only board found.",
    )(f)


@dataclass
class Session:
    """An unlocked operator session (`ribat unlock`), the context object of the commands
    it runs: they use its node rather than open the port again, which would end it."""

    client: NodeClient


# Where the operator lives: nodes keep UTC, people read their local time (--tz, $RIBAT_TZ;
# the system's zone when unset). Set once by the `ribat` group.
zone: "datetime.tzinfo | None" = None


def set_zone(name: str | None) -> None:
    global zone
    if not name:
        zone = None
        return
    if name.upper() == "UTC":
        zone = datetime.UTC
        return
    import zoneinfo

    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(
            f"{name!r} is no time zone: give an IANA name (Europe/Paris, Africa/Casablanca) "
            "or UTC",
            param_hint="--tz",
        ) from None


def when(t: "float | datetime.datetime", seconds: bool = False) -> str:
    """A time (Unix seconds, or a datetime) as the operator reads it: date, time, zone."""
    if isinstance(t, datetime.datetime):
        t = t.timestamp()
    local = datetime.datetime.fromtimestamp(t, zone or datetime.UTC)
    if zone is None:
        local = local.astimezone()  # the system's zone
    return local.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "") + " %Z")


def clock(t: float) -> str:
    """Unix time t as the time of day the operator reads (a console's lines)."""
    return when(t, seconds=True).split(" ", 1)[1]


def open_node(port: str | None) -> NodeClient:
    """Connect to the node on --port; closed when the command ends."""
    ctx = click.get_current_context()
    session = ctx.find_object(Session)
    if session is not None:
        if port is not None:
            raise click.UsageError(
                "inside an unlocked session, commands use its node: drop --port"
            )
        return session.client
    client = connect(ports.resolve(port))
    ctx.call_on_close(client.close)
    return client


def pin_option(f: F) -> F:
    return click.option(
        "--pin",
        envvar="RIBAT_PIN",
        metavar="PIN",
        help="Operator PIN: unlock the node for this command only ($RIBAT_PIN).",
    )(f)


def weak_pin_option(f: F) -> F:
    return click.option(
        "--weak-pin",
        is_flag=True,
        help="Accept a new PIN shorter than 10 characters (recorded in the audit log).",
    )(f)


def ask_new_pin(pin: str | None, weak: bool, prompt: str = "New operator PIN") -> str:
    """A new PIN (given, or typed twice), refused if weak unless weak is set; what a
    search of a stolen flash would cost for it is said on stderr."""
    from ribat import pins
    from ribat.ops.guard import offline_search

    pin = ask_pin(pin, prompt, confirm=True)
    weakness = pins.pin_weakness(pin)
    if weakness is not None and not weak:
        raise click.BadParameter(weakness, param_hint="PIN")
    click.echo(f"a search of a stolen flash for this PIN: {offline_search(pin)}", err=True)
    return pin


def ask_pin(pin: str | None, prompt: str = "PIN", confirm: bool = False) -> str:
    """pin, or one typed at the terminal; checked against the PIN rules either way."""
    import sys

    from ribat import pins

    if pin is None:
        if not sys.stdin.isatty():
            raise click.UsageError("a PIN is needed: give --pin or set RIBAT_PIN")
        pin = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    problem = pins.pin_problem(pin)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="PIN")
    return pin


def console(stderr: bool = False) -> "Console":
    """A rich console; into a pipe or file, lines and tables keep their natural width."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 1000
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def size(n: int | None) -> str:
    if n is None:
        return "n/a"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def duration(ms: int) -> str:
    s = ms // 1000
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    text = f"{h}h {m:02d}m {s:02d}s" if h or d else f"{m}m {s:02d}s"
    return f"{d}d {text}" if d else text


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress(done, total) that draws a bar on a terminal, and does nothing otherwise
    (rich only then: it costs a third of our start-up)."""
    bar = None
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        columns = (TextColumn(f"  {label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        bar = Progress(*columns, console=console(stderr=True), transient=True)
        bar.add_task(label, total=None)

    def progress(done: int, total: int) -> None:
        global _bar
        if bar is not None:
            bar.start()
            _bar = bar
            bar.update(bar.task_ids[0], completed=done, total=total or None)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.stop()
        _bar = None


_bar: "Progress | None" = None  # the progress bar on screen, which say() prints above


def say(message: str) -> None:
    """A step line on stderr; above the progress bar if one is drawn (not into it)."""
    if _bar is not None:
        _bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        click.echo(message, err=True)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def write_output(file: "Path", data: bytes) -> None:
    """data to file, whole or not at all; `-` is standard output."""
    if str(file) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from ribat.files import write_whole

    write_whole(file, data)


def plural(n: int, word: str) -> str:
    """ "1 node", "2 nodes"."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def since_time(text: str | None) -> int:
    """--since: a duration back from now (2h, 3d) or a date and time (the operator's
    zone unless it names one), as Unix time; 0 if not given."""
    if text is None:
        return 0
    import re
    import time

    if re.fullmatch(r"\d+[smhd]", text.strip()):
        return int(time.time()) - parse_duration(text, "--since")
    try:
        at = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give a duration back from now (2h, 3d) or a date (2026-11-24T08:00)",
            param_hint="--since",
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=zone) if zone else at.astimezone()
    return int(at.timestamp())


def parse_duration(text: str, what: str) -> int:
    """A duration as people write it (45s, 90m, 12h, 30d; bare: seconds) for option what."""
    import re

    m = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter(
            f"{text!r}: give a duration like 45s, 90m, 12h or 30d", param_hint=what
        )
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def json_option(help: str) -> Callable[[F], F]:
    """--json: the command's document (docs/json.md) instead of text for people."""
    return click.option("--json", "as_json", is_flag=True, help=help + " (docs/json.md).")


def echo_json(result: object) -> None:
    """A result (ribat.results) as one line of JSON on standard output; a list of results
    as one line each (JSON lines)."""
    import json

    from ribat.results import to_json

    for one in result if isinstance(result, list) else [result]:
        click.echo(json.dumps(to_json(one), ensure_ascii=False))
