"""Weak signals on a node (firmware/ribat/signals.py): lookups, the convergences it raised,
their acknowledgement. Indicators are normalised here as on the node (ribat.indicators),
so that a typo is refused before anything is sent."""

from ribat import indicators
from ribat.device.client import NodeClient
from ribat.errors import RibatError
from ribat.results import Convergence, Lookup

LOOKUP_TIMEOUT_S = 30.0  # the pairwise keys derived first, if the session has not yet


class BadIndicator(RibatError):
    """An indicator that is not one (its kind unknown, its value not of that kind)."""


def parse(text: str, partner: str) -> list[str]:
    """kind:value as the node takes it, [kind, normalised value]; BadIndicator if not."""
    try:
        kind, value = indicators.parse(text, partner)
    except ValueError as e:
        raise BadIndicator(f"{text!r}: {e}") from None
    return [kind, value]


def check(client: NodeClient, text: str) -> Lookup:
    """Has any other partner of the cell reported this indicator within the window? Who,
    and the lookups left today."""
    assert client.info is not None
    parse(text, client.info.partner)
    return Lookup.from_node(
        client.request("signals.check", timeout=LOOKUP_TIMEOUT_S, indicator=text)
    )


def convergences(client: NodeClient) -> tuple[list[Convergence], int]:
    """The node's convergences, newest last, and its window in days."""
    got = client.request("signals.list")
    keys = ("partner", "by", "id", "mine", "first", "detected", "acked")
    found = [Convergence.from_node(dict(zip(keys, c, strict=True))) for c in got["conv"]]
    return found, got["window_days"]


def acknowledge(client: NodeClient) -> int:
    return int(client.request("signals.ack")["acked"])
