"""What the command modules share: the --port option, opening a node, and formatting."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ribat import node, ports

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


def port_option(f: F) -> F:
    return click.option(
        "--port",
        "-p",
        metavar="PORT",
        help="Serial device, or sim:NAME for a virtual board. Default: the only board found.",
    )(f)


def open_node(port: str | None) -> node.NodeClient:
    """Connect to the node on --port; closed when the command ends."""
    client = node.connect(ports.resolve(port))
    click.get_current_context().call_on_close(client.close)
    return client


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
