# The ribat loader, run by the board after boot.py.
#
# It starts the firmware in the active slot (/fw/a or /fw/b, named by /fw/active); if that
# slot cannot be imported, the other one. A slot without its manifest is incomplete (a
# deploy was cut there) and is never run. After a Ctrl-C, control goes to the REPL if the
# host follows up within the grace time (mpremote and ribat send "\r\x01"); a stray Ctrl-C,
# or one followed by a request frame, only pauses the node. Kept small and stable: a
# deploy replaces it rarely, and atomically.
import sys

_GRACE_MS = 2000


def _host_wants_repl():
    """After a Ctrl-C: does the host want the REPL? The first byte it sends is consumed
    (a harmless "\r" from mpremote or ribat); a request frame is dropped, and we resume."""
    import select

    p = select.poll()
    p.register(sys.stdin, select.POLLIN)
    if not p.poll(_GRACE_MS):
        return False
    if sys.stdin.buffer.read(1) != b"\x1e":
        return True
    n = 0
    while n < 4096 and p.poll(100) and sys.stdin.buffer.read(1) != b"\n":
        n += 1
    return False


def _ribat_start():
    try:
        with open("/fw/active") as f:
            active = f.read().strip()
    except OSError:
        print("ribat: no firmware installed; deploy it with `ribat flash`")
        return
    for slot in (active, "b" if active == "a" else "a"):
        root = "/fw/" + slot
        try:
            open(root + "/manifest.json").close()
        except OSError:
            continue
        sys.path.insert(0, root)
        try:
            import ribat.app
        except Exception as e:  # noqa: BLE001 - any import failure: try the other slot
            print("ribat: slot %s does not start:" % slot)
            sys.print_exception(e)
            sys.path.remove(root)
            for name in list(sys.modules):
                if name in ("ribat", "hal") or name.startswith("ribat."):
                    del sys.modules[name]
            continue
        while True:
            try:
                ribat.app.run(slot, slot != active)
            except KeyboardInterrupt:
                print("ribat: interrupted; press Enter within 2 s for the REPL, or it resumes")
                if _host_wants_repl():
                    raise
    print("ribat: no slot can start; deploy again with `ribat flash`")


_ribat_start()
