"""What an operator PIN may be: its length and characters, and the length a new one needs
to hold against a search of a stolen flash. Shared by node and host (symlink
host/ribat/pins.py): the host checks before it sends, the node again before it takes.
No I/O.
"""

PIN_MIN = 6
PIN_MAX = 64
# A new PIN shorter than this falls to a search of a stolen flash in minutes (every
# 6-digit PIN in about 15 on one CPU core: docs/security.md); a passphrase of words joined
# by dashes passes easily. A shorter one only when asked for, and recorded (weak).
PIN_STRONG = 10


def pin_problem(pin: object) -> "str | None":
    """None if pin can be an operator PIN, else what is wrong with it."""
    if type(pin) is not str or not PIN_MIN <= len(pin) <= PIN_MAX:
        return "a PIN has %d to %d characters" % (PIN_MIN, PIN_MAX)
    for c in pin:
        if not " " < c <= "~":
            return "a PIN takes printable ASCII characters (no spaces)"
    return None


def pin_weakness(pin: str) -> "str | None":
    """Why pin, as a new PIN, would not hold against a search of a stolen flash; None if
    it is long enough."""
    if len(pin) >= PIN_STRONG:
        return None
    return (
        "a PIN of %d characters falls to a search of a stolen flash in minutes: choose one "
        "of %d or more (a passphrase), or accept the risk with --weak-pin" % (len(pin), PIN_STRONG)
    )
