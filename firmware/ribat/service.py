"""The operations a host can ask of the node: one method each, looked up by name.

Each takes the request's meta (its arguments) and returns the response meta; a refusal is
a RequestError naming its cause, which the link sends back as an ERROR frame.
"""

import asyncio
import binascii
import gc
import hashlib
import os
import sys

from micropython import const

from ribat import codec, keys
from ribat.digest import files_digest
from ribat.link import RequestError, arg

_RESET_DELAY_MS = const(100)  # time for the response to leave before the reset


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
            "fw.verify": self.fw_verify,
        }

    def handle(self, frame: codec.Frame) -> tuple:
        meta = frame.meta
        assert meta is not None
        op = meta.get("op")
        self.node.touch()
        method = self.ops.get(op)  # type: ignore[arg-type]
        if method is not None:
            return method(meta), b""
        if isinstance(op, str) and op.startswith("journal."):
            # on demand, then kept: reloading it at each request would scatter the heap
            from ribat import bulletins

            secured = bulletins.OPS.get(op)
        elif isinstance(op, str) and op.startswith("sync."):
            from ribat import replica

            secured = replica.OPS.get(op)
        else:
            from ribat import guard  # on demand: most requests are not about the keys

            secured = guard.OPS.get(op)  # type: ignore[arg-type]
        if secured is None:
            raise RequestError(codec.UNKNOWN, "unknown operation %r" % (op,))
        node = self.node
        try:
            result = secured(node, meta, frame.data)
        finally:
            # a locked node keeps no crypto between requests, except through an import
            if node.keyring.state != "unlocked" and node.intake is None:
                if keys.unload_crypto():
                    gc.collect()
        return result if isinstance(result, tuple) else (result, b"")

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
            "micropython": ".".join(str(x) for x in sys.implementation.version[:3]),
            "mpy": getattr(sys.implementation, "_mpy", 0),
        }

    def ping(self, meta: dict) -> dict:
        return {}

    def status(self, meta: dict) -> dict:
        sample = self.node.sampler.sample(collect=True)
        if self.node.wires:
            sample["wires"] = [w.summary() for w in self.node.wires]
        return sample

    def config_get(self, meta: dict) -> dict:
        config = self.node.config
        return {"values": config.all(), "rev": config.rev}

    def config_set(self, meta: dict) -> dict:
        updates = arg(meta, "set", dict, {})
        unset = arg(meta, "unset", list, [])
        config = self.node.config
        self.node.audit_room()
        problem = config.change(updates, unset)  # type: ignore[arg-type]
        if problem is not None:
            raise RequestError(codec.ARGS, problem)
        self.node.audit.append("config", {"set": updates, "unset": unset})
        return {"values": config.all(), "rev": config.rev}

    def fw_verify(self, meta: dict) -> dict:
        """The digest of the running slot's files and the loader's hash, from what is on
        flash now: a host that computes the same has nothing to deploy."""
        root = "/fw/" + self.node.slot
        files: dict = {}
        _hash_tree(root, "", files)
        return {
            "slot": self.node.slot,
            "files": len(files),
            "digest": files_digest(files),
            "loader": _sha256("/main.py"),
        }

    def reset(self, meta: dict) -> dict:
        hard = arg(meta, "hard", bool, False)
        asyncio.create_task(self._reset(bool(hard)))
        return {}

    async def _reset(self, hard: bool) -> None:
        await asyncio.sleep_ms(_RESET_DELAY_MS)
        self.node.board.reset(hard)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    buf = bytearray(512)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return binascii.hexlify(h.digest()).decode()


def _hash_tree(folder: str, prefix: str, out: dict) -> None:
    for entry in os.ilistdir(folder):
        name = entry[0]
        if entry[1] & 0x4000:
            _hash_tree(folder + "/" + name, prefix + name + "/", out)
        else:
            out[prefix + name] = _sha256(folder + "/" + name)
