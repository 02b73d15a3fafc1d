"""Writing a planned deploy onto the board, through its raw REPL: the target slot made
ready, files copied on the board or sent in batched execs and read back, the manifest
last, then the switch of /fw/active and main.py; restarting or recovering the board."""

import base64
import contextlib
from collections.abc import Callable
from pathlib import Path

from ribat.deploy.image import PACK, Image, pack_layout, sha256
from ribat.deploy.plan import BoardReport, Plan, other_slot
from ribat.device.repl import RawRepl, board_script
from ribat.device.transport import Port
from ribat.errors import DeployError, RibatError

CHUNK = 4096  # file bytes per exec: a few KB of script, well inside a Pico's heap
VERIFY_TIMEOUT_S = 20.0
RECOVER_TIMEOUT_S = 3.0
PROBE = Path(__file__).parent / "onboard" / "probe.py"
HELPERS = Path(__file__).parent / "onboard" / "write.py"

Progress = Callable[[int, int], None]  # (bytes sent so far, bytes to send)
Part = bytes | tuple[str, int, int]  # bytes sent, or (path, offset, size) copied on the board
Step = Callable[[str], None]


class Deployer:
    """One deploy onto the board on `port` (which the caller owns): probe(), then plan,
    then apply()."""

    def __init__(self, port: Port) -> None:
        self.repl = RawRepl(port)
        self.path = port.name

    def probe(self) -> BoardReport:
        # A soft reset into the raw REPL (main.py does not run there): an interrupted
        # node keeps much of its heap reachable, which a board with 110 KB cannot spare.
        self.repl.enter(soft_reset=True)
        probe = self.repl.eval_json(board_script(PROBE), timeout=VERIFY_TIMEOUT_S)
        return BoardReport.from_probe(probe)

    def _run(self, script: str, expect: dict[str, str]) -> None:
        """Exec script; each line it prints is "path sha256", checked against expect."""
        out = self.repl.exec(script, timeout=VERIFY_TIMEOUT_S).decode(errors="replace")
        got = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
        for path, digest in expect.items():
            if got.get(path) != digest:
                raise DeployError(
                    f"{path} reads back from the board's flash as {got.get(path)}, not "
                    f"{digest}: the flash may be failing; nothing was switched"
                )

    def apply(self, plan: Plan, image: Image, progress: Progress, step: Step) -> int:
        """Carry out the plan; the number of file bytes sent."""
        repl = self.repl
        root = f"/fw/{plan.slot}"
        if plan.up_to_date:
            return 0
        repl.exec(board_script(HELPERS))
        want = image.hashes
        if plan.switch:
            step(f"preparing slot {plan.slot}")
            dirs = sorted({str(Path(p).parent) for p in want if "/" in p})
            script = ["_mk('/fw')", f"_mk('{root}')", f"_rm('{root}/manifest.json')"]
            script += [f"_mk('{root}/{d}')" for d in dirs]
            # The stale files go, and the old versions of those about to be written: a
            # file rewritten in place holds its old blocks until it closes, and the pack
            # is most of a slot.
            script += [f"_rm('{root}/{p}')" for p in plan.remove + plan.transfer + plan.copy]
            # folders the removed files leave empty (a slot of the layout before packs)
            emptied = {str(parent) for p in plan.remove for parent in Path(p).parents}
            emptied.discard(".")
            script += [f"_rd('{root}/{d}')" for d in sorted(emptied, key=len, reverse=True)]
            repl.exec("\n".join(script))
        if plan.copy:
            step(f"copying {len(plan.copy)} unchanged files from slot {other_slot(plan.slot)}")
            src = f"/fw/{other_slot(plan.slot)}"
            script = [f"_cp('{src}/{p}', '{root}/{p}')" for p in plan.copy]
            self._run("\n".join(script), {f"{root}/{p}": want[p] for p in plan.copy})
        # The manifest goes last, under a temporary name: a slot has one only when whole.
        files = [
            (f"{root}/{p}", image.files[p], self._parts(p, plan, image))
            for p in plan.transfer
            if p != "manifest.json"
        ]
        if plan.loader:
            files.append(("/main.py.new", image.loader, [image.loader]))
        manifest = image.files["manifest.json"] if "manifest.json" in plan.transfer else b""
        total = len(manifest) + sum(
            len(part) for _, _, parts in files for part in parts if isinstance(part, bytes)
        )
        if plan.reuse:
            step(
                f"sending {len(image.members) - len(plan.reuse)} of the pack's "
                f"{len(image.members)} files (the rest from slot {other_slot(plan.slot)}'s pack)"
            )
        sent = self._send(files, progress, total)
        if manifest:
            step(f"writing the manifest of slot {plan.slot}")
            new = f"{root}/manifest.json.new"
            sent += self._send([(new, manifest, [manifest])], progress, total, sent)
            self._run(
                f"_mv('{root}/manifest.json.new', '{root}/manifest.json')",
                {f"{root}/manifest.json": want["manifest.json"]},
            )
        if plan.switch:
            step(f"switching to slot {plan.slot}")
            repl.exec(
                f"with open('/fw/active.new', 'w') as f:\n f.write('{plan.slot}')\n"
                "os.rename('/fw/active.new', '/fw/active')"
            )
        # main.py last: cut before this, the old loader finds a slot it cannot run and
        # starts the other one, as it always did; a new loader that could not run the
        # old slot (a new layout) would find no slot at all before the switch.
        if plan.loader:
            step("replacing main.py")
            self._run("_mv('/main.py.new', '/main.py')", {"/main.py": sha256(image.loader)})
        return sent

    def _send(
        self, files: list[tuple[str, bytes, list[Part]]], progress: Progress, total: int,
        done: int = 0,
    ) -> int:  # fmt: skip
        """Write files (path, content, how to make it) in execs of up to CHUNK bytes sent
        each (a file may span several); a part is bytes sent, or a range of a file on the
        board copied there; every file is hashed on the board in the exec that closes it,
        against its content."""
        lines: list[str] = []
        expect: dict[str, str] = {}
        pending = sent = 0

        def flush() -> None:
            nonlocal lines, expect, pending, sent
            self._run("\n".join(lines), expect)
            sent += pending
            progress(done + sent, total)
            lines, expect, pending = [], {}, 0

        for path, data, parts in files:
            lines.append(f"_o('{path}')")
            for part in parts:
                if isinstance(part, tuple):
                    lines.append(f"_r('{part[0]}', {part[1]}, {part[2]})")
                    continue
                view = memoryview(part)
                while view:
                    if pending == CHUNK:
                        flush()
                    piece, view = view[: CHUNK - pending], view[CHUNK - pending :]
                    lines.append(f"_w({base64.b64encode(piece)!r})")
                    pending += len(piece)
            lines.append(f"_c('{path}')")
            expect[path] = sha256(data)
        if lines:
            flush()
        return sent

    @staticmethod
    def _parts(path: str, plan: Plan, image: Image) -> list["Part"]:
        """How to make a slot's file on the board: the pack from the files of the active
        slot's pack it can reuse (plan.reuse) and the rest sent; any other file sent."""
        if path != PACK or not plan.reuse:
            return [image.files[path]]
        head, names = pack_layout(image.members)
        src = f"/fw/{other_slot(plan.slot)}/{PACK}"
        parts: list[Part] = [head]
        for name in names:
            there = plan.reuse.get(name)
            parts.append((src, *there) if there else image.members[name])
        return parts

    def restart(self) -> None:
        self.repl.start_app()

    def recover(self) -> None:
        """After a failure or Ctrl-C anywhere in a deploy: interrupt whatever the board is
        doing and restart it, so it runs its active slot again. Best effort, bounded."""
        with contextlib.suppress(RibatError, KeyboardInterrupt):
            self.repl.enter(soft_reset=False, timeout=RECOVER_TIMEOUT_S)
            self.repl.start_app()
