"""The node application: the board, its configuration, the serial link and telemetry,
composed as asyncio tasks. The loader (main.py) calls run() with the slot it started.
"""

import asyncio
import binascii
import gc
import json
import os
import time

import hal
from micropython import const

from ribat import audit, codec, config, journal, keys, link, service, store, telemetry

MAX_BODY = const(4096)  # largest frame body accepted (a journal entry fits); told in hello
_BLINK_MS = const(80)
_TICK_MS = const(50)  # how often the watch looks at the button and drives the LED
# A node in service restarts if its loop stops for this long (the RP2040's longest: 8.4 s).
# Not before it is provisioned: a board whose REPL a host breaks into (a deploy) would
# be reset under it, and a watchdog, once armed, runs until the next hard reset.
_WATCHDOG_MS = const(8000)
_HEARTBEAT_MS = const(2000)
_SESSION_MS = const(250)  # how often an unlocked session is looked after
_RETENTION_MS = const(1000)  # how often expired content is looked for (cheap: one list)
_GC_EVERY = const(16384)  # bytes allocated between two collections
_TRIAL_OK_MS = const(10000)  # a release on trial that runs this long confirms itself
_RESET_DELAY_MS = const(100)  # time for a response to leave before the board restarts
_MOUNT = "/firmware"  # where the loader (main.py) mounts the running slot's pack
_SPARE = const(32768)  # flash kept free beyond a firmware slot (a larger firmware, the audit log)
SIGNALS = "/journal/sig/state"  # ribat.signals.STATE


def _read_json(path: str) -> dict:
    # stat's size, not the file's end: a file of the pack is read from the pack (main.py)
    with open(path, "rb") as f:
        return json.loads(f.read(os.stat(path)[6]))


class Node:
    # The board's button held down this long after its start stands for the operator's
    # presence: a wipe without the PIN (ribat.guard.wipe).
    PRESENCE_MS = 10000

    def present(self) -> bool:
        return self.monitor.uptime_ms < self.PRESENCE_MS and self.board.button()

    def __init__(self, slot: str, fallback: bool) -> None:
        root = "/fw/" + slot
        self.slot = slot
        self.fallback = fallback
        # Only what the node tells of its manifest and board facts is kept: the rest (the
        # manifest's file list, the facts' sources) would hold some 9 KB of heap.
        manifest = _read_json(root + "/manifest.json")
        self.version = manifest.get("firmware", "?")
        self.revision = manifest.get("revision")
        self.build = manifest.get("build")
        del manifest
        facts = _read_json(_MOUNT + "/board.json")
        self.board_name = facts.get("name")
        self.board = hal.Board(facts)
        del facts
        self.reset_cause = self.board.reset_cause()
        # Tells this run from the one before, so a host can see a restart happened.
        self.boot_id = binascii.hexlify(os.urandom(4)).decode()
        self.config = config.Config()
        self.link = link.Link(MAX_BODY)
        self.monitor = telemetry.Monitor()
        self.sampler = telemetry.Sampler(self)
        self.audit = audit.AuditLog()
        max_tries: int = self.config.get("pin.max_tries")  # type: ignore[assignment]
        self.keyring = keys.Keyring(self.board.unique_id(), max_tries, self.board.vault())
        if self.keyring.wiped_at_start:
            self.audit.append("wipe", {"why": "lockout"})
        if self.keyring.identity is not None and self.keyring.tries() < self.audit.tries:
            from ribat import keywork  # rare: loaded for the repair alone

            keywork.restore_tries(self, max_tries)
            keys.unload_crypto()
        keys.unload("vault")  # read at the start; loaded again for a PIN, a wipe
        # Room for a deploy of the next firmware beside this one, whatever the journal: as
        # much flash as this one takes, less what the other slot holds (a deploy writes
        # over it), and a spare.
        block = os.statvfs("/")[0]
        other = "/fw/" + ("b" if slot == "a" else "a")
        held = store.tree_flash(other, block) if store.exists(other) else 0
        self.deploy_room = max(0, store.tree_flash(root, block) - held) + _SPARE
        keys.unload("footprint")
        self.open_journal()
        self.export_plan: "list | None" = None  # an export under way (journal.export)
        self.export_held: dict = {}  # origin -> seqs its receiver holds already
        self.intake = None  # an import under way (journal.import)
        self.watchdog: "object | None" = None  # the WDT, armed by on_watch until a hard reset
        self.wires: list = []  # the peers on the board's wires that answered (ribat.wire)
        self.quiet_wires: list = []  # the board's wires with no peer answering
        self.staged: "dict | None" = None  # a release being received (ribat.update)
        self.trial: "int | None" = None  # starts of a release on trial (ribat.update)
        self.once = False  # the session is for one command (ribat.guard.unlock)
        self.reverted: "dict | None" = None  # the last release, if it went back
        self.floor: "str | None" = None  # the highest release this node confirmed
        if self.keyring.identity is not None:
            from ribat import update

            if store.exists(update.TRIAL) or store.exists(update.REVERTED):
                update.at_start(self)
            self.floor = update.floor(self)  # the higher of its two copies
            keys.unload("update")
            keys.unload("vault")
        build = self.build or self.revision or self.version
        # a provisioned node never goes back to a build it replaced (run returns False);
        # a release on trial is recorded once it is confirmed
        self.runnable = self.trial is not None or self.audit.note_firmware(
            "%s %s" % (self.version, build), self.keyring.identity is not None
        )
        self.touched = time.ticks_ms()

    def open_journal(self) -> None:
        """(Re)read the journal: at start-up, and after a wipe emptied it."""
        self.journal = journal.Journal()
        self.journal.reserve = self.deploy_room
        self.alert_pending: list = []  # [id, severity, received] (ribat.alerts)
        self.alert_scan = 0
        self.alert_unsigned = False
        self.alerts_do("start")
        # where the next look for others' signal entries starts (from the first record:
        # a report converges whenever it came), and the convergences not yet acknowledged
        # (ribat.signals, loaded only once it has something to read)
        self.signal_scan = 0
        self.signals_pending = 0
        if store.exists(SIGNALS):
            self.signals_do("start")

    def signals_do(self, what: str, *args: object) -> object:
        """ribat.signals.<what>(self, *args), its code loaded for that moment alone."""
        from ribat import signals

        try:
            return getattr(signals, what)(self, *args)
        finally:
            keys.unload("signals")
            keys.unload("indicators")
            gc.collect()

    def alerts_do(self, what: str, *args: object) -> "list | None":
        """ribat.alerts.<what>(self, *args), its code loaded for that moment alone: kept
        through a session, its 3 KB leave a Pico W's session short for a list."""
        from ribat import alerts

        out = getattr(alerts, what)(self, *args)
        keys.unload("alerts")
        gc.collect()
        return out

    def follow_clock(self, now: object) -> None:
        """A board without a battery restarts its clock at power-up: the host's time (a
        request's "now") moves it forward, never back (a host can thus only make content
        expire early)."""
        if isinstance(now, int) and now > time.time() + 60:
            self.board.set_clock(now)

    def confirm_trial(self, by: str) -> None:
        """The release on trial works: confirmed (ribat.update)."""
        from ribat import update

        update.confirm(self, by)
        keys.unload("update")
        keys.unload("vault")
        gc.collect()

    def feed(self) -> None:
        """Feed the watchdog: the watch does each second; a request whose work outlasts
        its window (an unlock on an RP2040: some 7 s) does between its steps."""
        if self.watchdog is not None:
            self.watchdog.feed()  # type: ignore[attr-defined]

    def touch(self) -> None:
        """A request came: an unlocked session is not idle."""
        self.touched = time.ticks_ms()

    def reset_soon(self, hard: bool) -> None:
        """Restart the board once the answer to the request at hand has left."""
        asyncio.create_task(_reset(self.board, hard))

    def lock(self, why: str, quiet: bool = False) -> None:
        # Locked, the node cannot sign a fold, yet its sync keeps recording: leave it the
        # most room (a fold only for a fair gain: a signature and a rewrite of the log).
        budget: int = self.config.get("audit.max_entries")  # type: ignore[assignment]
        self.audit.fold(self.keyring, budget, budget // 2 + budget // 8)
        self.keyring.lock()
        if not quiet:
            self.audit.append("lock", {"why": why})
        keys.unload_crypto()
        gc.collect()

    def make_room_for_session(self) -> None:
        """At the unlock: drop the sync's modules (the next sync reloads them), so that
        an officer's session has the heap of a node that never synced: on a Pico W fed
        by syncs, a list of bulletins needs it."""
        keys.unload("exchange")
        keys.unload("replica")
        keys.unload("update")  # a release transfer left unfinished
        gc.collect()

    def audit_room(self, exchange: bool = False) -> None:
        """Make room in the audit log for a request's entry, or refuse the request. A full
        log is folded: signed while unlocked; without a signature while locked for an
        exchange of entries (the cell's replication must not stop for want of a PIN).
        Any other request a locked node would record waits for an unlock."""
        budget: int = self.config.get("audit.max_entries")  # type: ignore[assignment]
        if not self.audit.full(budget) or self.audit.fold(self.keyring, budget, 0, exchange):
            return
        raise link.RequestError(
            codec.LOCKED,
            "the audit log is full: unlock the node (`ribat unlock`) so it can fold its log",
        )


async def _reset(board: object, hard: bool) -> None:
    await asyncio.sleep_ms(_RESET_DELAY_MS)
    board.reset(hard)  # type: ignore[attr-defined]  # hal.Board


# The LED's patterns, (on, off) in ms: the heartbeat of a node with no alert pending, or
# the most urgent pending alert's.
PATTERNS = {
    None: (_BLINK_MS, _HEARTBEAT_MS - _BLINK_MS),
    "priority": (250, 250),
    "flash": (100, 100),
    "overdue": (1000, 0),  # steady
    "convergence": (500, 1500),  # two partners reported the same thing (ribat.signals)
}


def _pattern(node: Node) -> "str | None":
    """What the LED shows: None (the heartbeat), or the pattern of the most urgent pending
    alert; "overdue" once one has waited past alert.ack_timeout_s."""
    pending = node.alert_pending
    config = node.config
    if not config.get("alert.enabled"):
        return None
    if not pending:
        return "convergence" if node.signals_pending else None
    timeout: int = config.get("alert.ack_timeout_s")  # type: ignore[assignment]
    now = time.time()
    if any(now - a[2] >= timeout for a in pending):
        return "overdue"
    return "flash" if any(a[1] == "flash" for a in pending) else "priority"


async def on_watch(node: Node) -> None:
    """The LED, the buzzer and the button (ribat.alerts): the heartbeat, or the pattern
    of the alerts pending; a press acknowledges them; an unlocked node reads what came,
    each second; and the watchdog, fed each second."""
    board = node.board
    config = node.config
    pressed = False
    lit = sounding = None
    t = seen = 0
    while True:
        await asyncio.sleep_ms(_TICK_MS)
        t += _TICK_MS
        if t % 1000 == 0:
            if node.watchdog is None and node.keyring.identity is not None:
                node.watchdog = board.watchdog(_WATCHDOG_MS)
            node.feed()
            if node.trial is not None and t >= _TRIAL_OK_MS:
                node.confirm_trial("self")
            # what came is read once the journal is quiet for a second: an import's
            # heap first (a Pico between two wires has none to spare for both)
            count = node.journal.count
            if count != seen:
                seen = count
            elif node.journal.batched():
                # a batch an import left open a second (its host paused, or went): on flash
                try:
                    node.journal.end()
                except OSError:
                    pass  # its files closed still: the next start reads what they kept
            elif (
                node.signal_scan < count
                and node.intake is None
                and node.keyring.identity is not None
            ):
                node.signals_do("look")
        if (
            t % 1000 == 0
            and node.keyring.state == "unlocked"
            and (node.alert_scan < node.journal.count or node.alert_unsigned)
        ):
            node.alerts_do("look")
        down = board.button()
        if down and not pressed and node.alert_pending:
            node.alerts_do("press", int(time.time()))
        if down and not pressed and node.signals_pending:
            node.signals_do("acknowledge", int(time.time()))
        pressed = down
        pattern = _pattern(node)
        on_ms, off_ms = PATTERNS[pattern]
        on = t % (on_ms + off_ms) < on_ms
        level = config.get("led.brightness") if on else 0
        if level != lit:
            board.led(level)  # type: ignore[arg-type]
            lit = level
        beep = pattern in ("flash", "overdue") and t % _HEARTBEAT_MS < 150
        beep = bool(beep and config.get("alert.buzzer"))
        if beep != sounding:
            board.buzzer(beep)
            sounding = beep


def _derive_next_pair(keyring: keys.Keyring) -> bool:
    from ribat import pairs  # on demand, dropped again at the lock

    return pairs.derive_next_pair(keyring)


async def session(node: Node) -> None:
    """End an unlocked session when it idles or its host goes; meanwhile, derive the
    pairwise keys one at a time and fold the audit log when it is due."""
    keyring = node.keyring
    while True:
        await asyncio.sleep_ms(_SESSION_MS)
        if keyring.state != "unlocked":
            continue
        idle_ms = time.ticks_diff(time.ticks_ms(), node.touched)
        if idle_ms > node.config.get("pin.idle_s") * 1000:  # type: ignore[operator]
            node.lock("idle")
        elif node.board.host_present() is False:
            node.lock("host-gone")
        elif not _derive_next_pair(keyring):
            node.audit.fold(keyring, node.config.get("audit.max_entries"))  # type: ignore[arg-type]


async def retention(node: Node) -> None:
    """Purge expired content (keys or not: it needs none)."""
    while True:
        try:
            node.journal.purge(int(time.time()))
        except OSError:
            pass  # a flash too full to write: the next round tries again
        await asyncio.sleep_ms(_RETENTION_MS)


async def main(node: Node) -> None:
    # Said first: a host waiting for an answer from the node's previous start knows at
    # once that it will not come (a board that loses power mid-request on a real USB
    # port vanishes from the host instead).
    node.link.event({"event": "boot", "boot": node.boot_id, "reset_cause": node.reset_cause})
    asyncio.create_task(node.monitor.run())
    asyncio.create_task(telemetry.push(node))
    asyncio.create_task(on_watch(node))
    asyncio.create_task(session(node))
    asyncio.create_task(retention(node))
    node.quiet_wires = node.board.wires()
    if node.quiet_wires:
        from ribat import wires  # a board with none (a Pico W) holds none of its code

        asyncio.create_task(wires.watch(node))
    await node.link.serve(lambda frame: service.handle(node, frame))


def run(slot: str, fallback: bool = False) -> bool:
    """Run the node; it returns only to refuse a build this node replaced (False)."""
    asyncio.new_event_loop()  # forget the tasks of a run that was interrupted
    node = Node(slot, fallback)
    if not node.runnable:
        return False
    # Collect often, not only when the heap is full: left to fill the heap, garbage
    # scatters the few objects that live on across all of it, and a frame or a bulletin
    # of a few KB then finds no free block to fit in.
    gc.collect()
    gc.threshold(_GC_EVERY)
    asyncio.run(main(node))
    return True
