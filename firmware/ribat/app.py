"""The node application: the board, its configuration, the serial link and telemetry,
composed as asyncio tasks. The loader (main.py) calls run() with the slot it started.
"""

import asyncio
import binascii
import json
import os

import hal
from micropython import const

from ribat import config, link, service, telemetry

MAX_BODY = const(1024)  # largest frame body accepted; told to the host in hello
_BLINK_MS = const(80)
_HEARTBEAT_MS = const(2000)


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


class Node:
    def __init__(self, slot: str, fallback: bool) -> None:
        root = "/fw/" + slot
        self.slot = slot
        self.fallback = fallback
        self.manifest = _read_json(root + "/manifest.json")
        self.version = self.manifest.get("firmware", "?")
        self.facts = _read_json(root + "/board.json")
        self.board = hal.Board(self.facts)
        self.reset_cause = self.board.reset_cause()
        # Tells this run from the one before, so a host can see a restart happened.
        self.boot_id = binascii.hexlify(os.urandom(4)).decode()
        self.config = config.Config()
        self.link = link.Link(MAX_BODY)
        self.monitor = telemetry.Monitor()
        self.sampler = telemetry.Sampler(self)


async def heartbeat(node: Node) -> None:
    """A short blink every two seconds at the configured brightness: the node is alive."""
    board = node.board
    while True:
        board.led(node.config.get("led.brightness"))  # type: ignore[arg-type]
        await asyncio.sleep_ms(_BLINK_MS)
        board.led(0)
        await asyncio.sleep_ms(_HEARTBEAT_MS - _BLINK_MS)


async def main(node: Node) -> None:
    asyncio.create_task(node.monitor.run())
    asyncio.create_task(telemetry.push(node))
    asyncio.create_task(heartbeat(node))
    await node.link.serve(service.Service(node).handle)


def run(slot: str, fallback: bool = False) -> None:
    asyncio.new_event_loop()  # forget the tasks of a run that was interrupted
    asyncio.run(main(Node(slot, fallback)))
