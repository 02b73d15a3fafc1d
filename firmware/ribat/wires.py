"""The board's wires while no peer answers on them (ribat.wire has the sync itself):
knock on each now and then, once the node has keys, and start a wire's sync when a peer
says something on it; loaded only on a board with wires."""

import asyncio
import gc
import select

from micropython import const

from ribat import codec, keys

_KNOCK_MS = const(2000)  # how often a node with no peer yet knocks on its wire
_WATCH_MS = const(100)  # how often it looks for an answer


async def watch(node) -> None:
    """Knock now and then on each of the board's quiet wires, once the node has keys;
    load the wire's code for a wire (some 11 KB of heap that a board with no peer keeps)
    when a peer says something on it. One task, polled: a task per wire, or
    asyncio.wait_for, would cost a board with no peer more heap than the whole watch."""
    poll = select.poll()
    watched: list = []
    while True:
        for stream in node.quiet_wires:
            if stream not in watched:
                poll.register(stream, select.POLLIN)
                watched.append(stream)
        if node.keyring.state == "unprovisioned" or not watched:
            await asyncio.sleep_ms(_KNOCK_MS)  # nothing to sync yet: not even listening
            continue
        for stream in watched:
            codec.write(stream, codec.REQUEST, 0, {"op": "ping"})
        for _ in range(_KNOCK_MS // _WATCH_MS):
            await asyncio.sleep_ms(_WATCH_MS)
            heard = None
            for heard, _ in poll.ipoll(0):
                break
            if heard is not None:
                poll.unregister(heard)
                watched.remove(heard)
                node.quiet_wires.remove(heard)
                asyncio.create_task(_run_wire(node, heard))
                break


async def _run_wire(node, stream: object) -> None:
    """Sync with the peer on stream while it answers; then give the heap back and let
    the watch listen on that wire again."""
    from ribat import wire

    peer = wire.Wire(node, stream)
    node.wires.append(peer)
    serving = asyncio.create_task(peer.serve(peer.answer))
    await peer.pull()
    serving.cancel()
    node.wires.remove(peer)
    peer = serving = None  # type: ignore[assignment]
    node.quiet_wires.append(stream)
    if not node.wires:
        keys.unload("wire")
    gc.collect()
