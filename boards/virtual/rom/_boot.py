"""The virtual board's ROM: what a board's built-in firmware does at every reset.

Mounts the littlefs flash at /, formatting it if it does not mount (as the rp2 port's
_boot.py does), then runs boot.py and, unless the reset came from the raw REPL, main.py,
in the REPL's namespace. The simulator then finds the REPL waiting on the terminal.
"""

import os
import sys

# A board whose clock was moved (`ribat sim clock`) runs its clock (clock/time.py) in
# place of the host's time module, loaded before anything imports time: MicroPython lets
# a module on the path extend a built-in one. Only then: its names take the running node
# into MicroPython's next string pool (some 7 KB less heap free at boot, README: Figures),
# and a board whose heap is measured keeps MicroPython's own.
if os.getenv("RIBAT_SIM_CLOCK"):
    sys.path.insert(0, "clock")

import machine  # noqa: E402, F401  (the ROM's, cached before the flash is mounted over the ROM)
import vboard  # noqa: E402
import vflash  # noqa: E402
import vfs  # noqa: E402


def _mount() -> None:
    image = os.getenv("RIBAT_SIM_FLASH") or "flash.img"
    block_size = int(os.getenv("RIBAT_SIM_BLOCK_SIZE") or "4096")
    blocks = int(os.getenv("RIBAT_SIM_BLOCKS") or "256")
    flash = vflash.Flash(image, block_size, blocks)
    vault = int(os.getenv("RIBAT_SIM_VAULT_BLOCKS") or "0")
    if vault:  # opened now: once littlefs is mounted over /, the image's path is gone
        vboard.vault = vflash.Flash(image, block_size, vault, blocks)
    # A board has one filesystem: the host's, which the unix port mounts at /, goes first,
    # whatever happens next (the files the ROM opened, the flash image's, stay open)
    vfs.umount("/")
    progsize = int(os.getenv("RIBAT_SIM_PROGSIZE") or "32")  # as the port's own _boot.py
    # The stubs declare VfsLfs2 abstract and want a class derived from theirs: they are wrong.
    try:
        fs = vfs.VfsLfs2(flash, progsize=progsize)  # type: ignore[abstract, arg-type]
    except OSError:
        vboard.report("formatted")
        vfs.VfsLfs2.mkfs(flash, progsize=progsize)  # type: ignore[arg-type]
        fs = vfs.VfsLfs2(flash, progsize=progsize)  # type: ignore[abstract, arg-type]
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]


def _scripts() -> tuple:
    if os.getenv("RIBAT_SIM_MODE") == "raw":
        return ("boot.py",)
    return ("boot.py", "main.py")


def _run(script: str) -> None:
    """pyexec_file, as a board runs boot.py and main.py: errors are printed, not fatal."""
    try:
        f = open(script)
    except OSError:
        return  # no such script
    try:
        with f:
            code = compile(f.read(), script, "exec")
        exec(code, globals())
    except SystemExit:  # machine.soft_reset() or sys.exit(): a board restarts MicroPython
        vboard.soft_reset()
    except BaseException as e:
        sys.print_exception(e)


_mount()
if os.getenv("RIBAT_SIM_PROBE"):  # the simulator asks what the ROM holds (interpreter.py)
    import gc

    gc.collect()
    print("rom-heap", gc.mem_alloc())
    sys.exit()
vboard.report("booted")
for _script in _scripts():
    _run(_script)
del _mount, _scripts, _run, _script
