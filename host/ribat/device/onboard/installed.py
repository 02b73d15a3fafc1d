"""Is ribat installed, and which MicroPython runs: asked of a board that does not answer
frames (run at its raw REPL by ribat.device.client.connect)."""

import json
import os
import sys

try:
    os.stat("/fw/active")
    _installed = True
except OSError:
    _installed = False
print(
    json.dumps(
        {
            "firmware": _installed,
            "micropython": ".".join(str(x) for x in sys.implementation.version[:3]),
        }
    )
)
