"""The operations a host can ask of the node, looked up by name: the few kept loaded
here (OPS), the rest in the modules loaded when first asked for (each with its OPS).

Each takes the node, the request's meta (its arguments) and its data, and returns the
response meta (or meta and data); a refusal is a RequestError naming its cause, which the
link sends back as an ERROR frame.
"""

import binascii
import gc
import hashlib
import os
import sys

from ribat import codec, keys, schema
from ribat.digest import files_digest
from ribat.link import RequestError, arg

_BULLETINS = ("journal.post", "journal.list", "journal.show", "journal.ack")  # the rest: exchange


def handle(node, frame: codec.Frame) -> tuple:
    """The response (meta, data) to a request frame, from the operation it names: this
    module's own, always loaded, or one of a module loaded on demand."""
    meta = frame.meta
    assert meta is not None
    op = meta.get("op")
    keyring = node.keyring
    keyring.authentic = False
    if "a" in meta:  # a request sent as a session's
        from ribat import wrapped

        meta = wrapped.unwrap(keyring, meta, frame.data)
    if keyring.authentic:
        node.touch()  # the session is not idle (other hosts' requests do not count)
    secured: object = OPS.get(op) or _on_demand(op)  # type: ignore[arg-type]
    if secured is None:
        raise RequestError(codec.UNKNOWN, "unknown operation %r" % (op,))
    try:
        result = secured(node, meta, frame.data)  # type: ignore[operator]
    finally:
        # a locked node keeps no crypto between requests, except through an import
        if node.keyring.state != "unlocked" and node.intake is None:
            if keys.unload_crypto():
                gc.collect()
        elif "ribat.guard" in sys.modules:
            keys.unload("guard")  # its operations are rare in a session: 4 KB back for it
    return result if isinstance(result, tuple) else (result, b"")


def _on_demand(op: object) -> object:
    """The operation op of a module loaded when first asked for, then kept (reloading it
    at each request would scatter the heap); None if no module has it."""
    if op in _BULLETINS:
        from ribat import bulletins

        return bulletins.OPS.get(op)
    if not isinstance(op, str):
        return None
    if op.startswith("journal."):
        from ribat import exchange

        return exchange.OPS.get(op)
    if op.startswith("signals."):
        return _signals_op(op)
    if op.startswith("fw."):
        from ribat import update

        return update.OPS.get(op)
    if op.startswith("sync."):
        from ribat import replica

        return replica.OPS.get(op)
    from ribat import guard  # most requests are not about the keys

    return guard.OPS.get(op)


def _signals_op(op: str) -> object:
    """A signals.* operation, its module loaded for the request alone (Node.signals_do)."""
    from ribat import signals

    if op not in signals.OPS:
        return None
    name = signals.OPS[op]
    return lambda node, meta, data: node.signals_do(name, meta, data)


def hello(node, meta: dict, data: bytes) -> dict:
    config = node.config
    return {
        "proto": codec.VERSION,
        "fw": node.version,
        "revision": node.revision,
        "build": node.build,
        "board": node.board_name,
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
        "floor": node.floor,  # the highest release it confirmed (ribat.update)
        "trial": node.trial,  # starts of a release on trial, or None
        "reverted": node.reverted,  # the release that went back, if the last one did
    }


def ping(node, meta: dict, data: bytes) -> dict:
    return {}


def status(node, meta: dict, data: bytes) -> dict:
    sample = node.sampler.sample(collect=True)
    sample["records"] = node.journal.count  # a console reads what is new (after=)
    sample["signals"] = node.signals_pending  # convergences not acknowledged
    if node.wires:
        sample["wires"] = [w.summary() for w in node.wires]
    return sample


def config_get(node, meta: dict, data: bytes) -> dict:
    config = node.config
    return {"values": config.all(), "rev": config.rev}


def config_set(node, meta: dict, data: bytes) -> dict:
    updates: dict = arg(meta, "set", dict, {})  # type: ignore[assignment]
    unset: list = arg(meta, "unset", list, [])  # type: ignore[assignment]
    config = node.config
    if node.keyring.state != "unprovisioned" and not node.keyring.in_session():
        for key in list(updates) + unset:
            if schema.guarded(key):
                raise RequestError(
                    codec.LOCKED,
                    "%s can change on a provisioned node only in an unlocked session: "
                    "give the operator PIN" % key,
                )
    node.audit_room()
    problem = config.change(updates, unset)
    if problem is not None:
        raise RequestError(codec.ARGS, problem)
    node.audit.append("config", {"set": updates, "unset": unset})
    return {"values": config.all(), "rev": config.rev}


def fw_verify(node, meta: dict, data: bytes) -> dict:
    """The digest of the running slot's files and the loader's hash, from what is on
    flash now: a host that computes the same has nothing to deploy."""
    root = "/fw/" + node.slot
    files: dict = {}
    _hash_tree(root, "", files)
    return {
        "slot": node.slot,
        "files": len(files),
        "digest": files_digest(files),
        "loader": file_sha256("/main.py"),
    }


def reset(node, meta: dict, data: bytes) -> dict:
    node.reset_soon(bool(arg(meta, "hard", bool, False)))
    return {}


def file_sha256(path: str) -> str:
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
            out[prefix + name] = file_sha256(folder + "/" + name)


OPS = {
    "hello": hello,
    "ping": ping,
    "status": status,
    "config.get": config_get,
    "config.set": config_set,
    "reset": reset,
    "fw.verify": fw_verify,
}
