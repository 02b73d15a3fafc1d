"""The operations a host can ask of the node: one method each, looked up by name.

Each takes the request's meta (its arguments) and returns the response meta; a refusal is
a RequestError naming its cause, which the link sends back as an ERROR frame.
"""

import asyncio
import binascii

from micropython import const

from ribat import codec
from ribat.link import RequestError

_RESET_DELAY_MS = const(100)  # time for the response to leave before the reset


def _args(meta: dict, name: str, kind: type, default: object) -> object:
    value = meta.get(name, default)
    if not isinstance(value, kind):
        raise RequestError(codec.ARGS, "%r must be a %s" % (name, kind.__name__))
    return value


class Service:
    def __init__(self, node) -> None:  # type: ignore[no-untyped-def]
        self.node = node
        self.ops = {
            "hello": self.hello,
            "ping": self.ping,
            "status": self.status,
            "config.get": self.config_get,
            "config.set": self.config_set,
            "reset": self.reset,
        }

    def handle(self, frame: codec.Frame) -> tuple:
        meta = frame.meta
        assert meta is not None
        op = meta.get("op")
        method = self.ops.get(op)  # type: ignore[arg-type]
        if method is None:
            raise RequestError(codec.UNKNOWN, "unknown operation %r" % (op,))
        return method(meta), b""

    def hello(self, meta: dict) -> dict:
        node = self.node
        config = node.config
        return {
            "proto": codec.VERSION,
            "fw": node.version,
            "revision": node.manifest.get("revision"),
            "build": node.manifest.get("build"),
            "board": node.facts.get("name"),
            "name": config.get("node.name"),
            "partner": config.get("node.partner"),
            "uid": binascii.hexlify(node.board.unique_id()).decode(),
            "boot": node.boot_id,
            "slot": node.slot,
            "fallback": node.fallback,
            "max_frame": node.link.max_body,
            "config_error": config.error,
        }

    def ping(self, meta: dict) -> dict:
        return {}

    def status(self, meta: dict) -> dict:
        return self.node.sampler.sample(collect=True)

    def config_get(self, meta: dict) -> dict:
        config = self.node.config
        return {"values": config.all(), "rev": config.rev}

    def config_set(self, meta: dict) -> dict:
        updates = _args(meta, "set", dict, {})
        unset = _args(meta, "unset", list, [])
        config = self.node.config
        problem = config.change(updates, unset)  # type: ignore[arg-type]
        if problem is not None:
            raise RequestError(codec.ARGS, problem)
        return {"values": config.all(), "rev": config.rev}

    def reset(self, meta: dict) -> dict:
        hard = _args(meta, "hard", bool, False)
        asyncio.create_task(self._reset(bool(hard)))
        return {}

    async def _reset(self, hard: bool) -> None:
        await asyncio.sleep_ms(_RESET_DELAY_MS)
        self.node.board.reset(hard)
