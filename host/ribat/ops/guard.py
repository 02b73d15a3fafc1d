"""The host side of the node's security core: provisioning, the PIN session, the roster
and the audit log, over a NodeClient. The operations themselves run on the node
(firmware/ribat/guard.py); nothing here ever holds a node's secret.
"""

import os
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ribat import session, x25519
from ribat.authority.cell import Cell, verify_identity
from ribat.device.client import NodeClient
from ribat.errors import Locked, NotRibat, WrongState

# Public-key work in pure Python on a Pico takes seconds (docs/security.md has the figures).
PROVISION_TIMEOUT_S = 60.0
PIN_TIMEOUT_S = 20.0
ROSTER_TIMEOUT_S = 20.0
PRESENCE_S = 10.0  # how long after its start a node takes a button press (Node.PRESENCE_MS)
PRESENCE_POLL_S = 0.2
# PINs an attacker with a node's flash tests each second on one CPU core (PBKDF2 of the
# seal, in C): measured by bench/security.py on this project's build machine
OFFLINE_GUESSES_PER_S = 710


def pin_guesses(pin: str) -> int:
    """The guesses a search of every PIN like pin needs at worst: the size of the
    alphabets it draws on (digits 10, lower and upper case 26 each, the rest 32) to the
    power of its length. An upper bound: a PIN made of words needs far fewer."""
    alphabets = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
    size = sum(len(a) for a in alphabets if any(c in a for c in pin))
    if any(not c.isalnum() for c in pin):
        size += len(string.punctuation)
    return size ** len(pin)


def offline_search(pin: str) -> str:
    """What a search of a stolen flash for pin costs at worst, in words."""
    seconds = pin_guesses(pin) / OFFLINE_GUESSES_PER_S
    if seconds >= 1e6 * 365 * 86400:
        return "more than a million years of one CPU core"
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600)):
        if seconds >= size:
            return f"about {seconds / size:,.0f} {unit} of one CPU core"
    return f"about {seconds / 60:,.0f} minutes of one CPU core"


_FRAME_SPARE = 160  # bytes of a frame body left for the header and meta around a piece


def identity(client: NodeClient) -> dict:
    return client.request("identity")


def pin_channel(client: NodeClient, **pins: str) -> tuple[dict, bytes]:
    """The node's PIN key (pin.key) completed with one of ours: the arguments that carry
    each of pins sealed under it, and the session's MAC key (ribat.session). The PINs
    never cross the link in clear, and a recording of them opens nothing later."""
    offer = client.request("pin.key", timeout=PIN_TIMEOUT_S)
    secret = os.urandom(32)
    shared = x25519.x25519(secret, bytes.fromhex(offer["kx"]))
    pin_key, mac_key = session.keys(shared, bytes.fromhex(offer["nonce"]))
    args = {"kx": x25519.public_key(secret).hex()}
    for name, pin in pins.items():
        args[name] = session.seal_pin(pin_key, name.encode(), pin).hex()
    return args, mac_key


def provision(
    client: NodeClient, cell: Cell, partner: str, name: str, pin: str, weak: bool = False
) -> dict:
    """Have the node make its keys, seal them under pin and pin cell's authority. A PIN
    shorter than pins.PIN_STRONG is refused unless weak (the node records it)."""
    args, _ = pin_channel(client, pin=pin)
    if weak:
        args["weak"] = True
    return client.request(
        "provision",
        timeout=PROVISION_TIMEOUT_S,
        partner=partner,
        name=name,
        authority=cell.public.hex(),
        **args,
    )


def exported_identity(client: NodeClient) -> dict:
    """The node's signed identity document, checked before anyone relies on it."""
    info = identity(client)
    doc = info.get("doc")
    if doc is None:
        raise WrongState("the node is not provisioned: run `ribat provision`", "state")
    body = verify_identity(doc)
    if body["sign"] != info["sign"]:
        raise NotRibat("the node's identity document is not its own: the node is faulty")
    return doc


def unlock(client: NodeClient, pin: str, once: bool = False) -> dict:
    """Unlock the node; the client's next requests are the session's (MAC'd, numbered).
    once: a session for one command, locked at once after (its audit entry says so, and
    the lock asked for then costs none)."""
    args, mac_key = pin_channel(client, pin=pin)
    if once:
        args["once"] = True
    reply = client.request("unlock", timeout=PIN_TIMEOUT_S, **args)
    client.open_session(mac_key)
    return reply


def lock(client: NodeClient) -> dict:
    reply = client.request("lock")
    client.close_session()
    return reply


@contextmanager
def unlocked(client: NodeClient, pin: str | None) -> Iterator[None]:
    """With pin: the node unlocked for what runs inside, and locked again after. Without:
    the node is used as it is (the session of `ribat unlock`, or locked)."""
    if pin is None:
        yield
        return
    unlock(client, pin, once=True)
    try:
        yield
    finally:
        lock(client)


def change_pin(client: NodeClient, pin: str, new: str, weak: bool = False) -> None:
    args, _ = pin_channel(client, pin=pin, new=new)
    if weak:
        args["weak"] = True
    client.request("pin.change", timeout=2 * PIN_TIMEOUT_S, **args)


def wipe(client: NodeClient, pin: str | None = None) -> dict:
    """Erase the node's keys and content: a provisioned node needs its PIN (pin, or the
    session of `ribat unlock`), or wipe_by_presence."""
    if pin is not None:
        unlock(client, pin)
    return _restarted(client, client.request("wipe", confirm=True))


def _restarted(client: NodeClient, out: dict) -> dict:
    """out, once the node is back if the wipe restarts it (a watchdog stops only then):
    the next command finds it answering, not restarting under it."""
    if out.get("restart"):
        assert client.info is not None
        client.wait_ready(not_boot=client.info.boot)
    return out


def wipe_by_presence(client: NodeClient, now_press: Callable[[float], None]) -> dict:
    """Restart the node, then wipe it once someone holds its button down in the seconds
    after the start (as a FIDO key's reset needs presence). now_press(seconds) is called
    when the window opens; Locked if no press came in it."""
    assert client.info is not None
    boot = client.info.boot
    client.request("reset")
    client.wait_ready(not_boot=boot)
    deadline = time.monotonic() + PRESENCE_S
    now_press(PRESENCE_S)
    while True:
        try:
            return _restarted(client, client.request("wipe", confirm=True))
        except Locked:
            if time.monotonic() > deadline:
                raise Locked(
                    f"no press of the board's button came within {PRESENCE_S:g} s of its "
                    "start: nothing was wiped"
                ) from None
        time.sleep(PRESENCE_POLL_S)


def load_roster(client: NodeClient, roster: bytes) -> dict:
    """Send a signed roster in pieces that fit the node's frames; the node loads it when
    the last piece arrives, and refuses it whole if it is not for it."""
    assert client.info is not None
    piece = max(64, client.info.max_frame - _FRAME_SPARE)
    offset = 0
    while True:
        chunk = roster[offset : offset + piece]
        meta, _ = client.exchange(
            "roster.load", chunk, ROSTER_TIMEOUT_S, offset=offset, total=len(roster)
        )
        offset = meta["received"]
        if offset >= len(roster):
            return meta


def pairs(client: NodeClient) -> list[dict]:
    return client.request("cell.pairs", timeout=PROVISION_TIMEOUT_S)["pairs"]


def read_audit(client: NodeClient) -> tuple[bytes, dict]:
    """The node's audit log as its flash holds it, and the head the node reported last.
    Appends only grow the log; if it shrinks meanwhile the node folded it: read again."""
    while True:
        meta, chunk = client.exchange("audit.read", offset=0)
        size = meta["size"]
        log = bytearray(chunk)
        while len(log) < size and chunk:
            meta, chunk = client.exchange("audit.read", offset=len(log))
            if meta["size"] < size:
                break
            log += chunk
        else:
            return bytes(log[: log.rfind(b"\n") + 1]), meta


def audit_lines(log: bytes) -> list[bytes]:
    return [line for line in log.split(b"\n") if line]
