"""Errors the library raises for conditions a user can act on.

str(error) is the one-line message the CLI shows; it says what is wrong and what to do.
The CLI maps each class to an exit status in one table (ribat.cli.EXIT_CODES).
"""


class RibatError(Exception):
    """Base of every error meant for the user."""


class NoBoard(RibatError):
    """No board to talk to, or the port named does not exist."""


class SeveralBoards(RibatError):
    """More than one board and no --port to choose."""


class PortBusy(RibatError):
    """Another program holds the port."""


class PortGone(RibatError):
    """The port disappeared while we used it (unplugged, virtual board stopped)."""


class BoardRestarted(PortGone):
    """The board restarted (power cut, reset) in the middle of what we were doing."""


class NoAnswer(RibatError):
    """The board said nothing in time."""


class NotRibat(RibatError):
    """The board runs MicroPython but not (a working) ribat firmware."""


class Unsupported(RibatError):
    """The board runs a MicroPython, or is a board, that ribat does not support."""


class ProtocolMismatch(RibatError):
    """Host and node speak different versions of the protocol."""


class InvalidConfig(RibatError):
    """A configuration key or value that the schema refuses."""


class DeviceError(RibatError):
    """The node refused or failed a request; .cause is the protocol's name for why."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class Locked(DeviceError):
    """The request needs an unlocked node (the operator PIN)."""


class WrongPin(DeviceError):
    """The operator PIN was wrong; the node counted the try."""


class WrongState(DeviceError):
    """The node is not in the state the request needs (provisioned, unprovisioned)."""


class Refused(DeviceError):
    """The node refused a document: forged, older, another cell's, garbage."""


class CellError(RibatError):
    """A cell directory, identity file, roster or audit file that cannot be used."""


class DeployError(RibatError):
    """A deploy could not complete; the board still runs what it ran before."""


class Sealed(DeployError):
    """A provisioned node asked to take firmware other than a signed release."""


class SimError(RibatError):
    """A virtual board could not be started, found or controlled."""


class AuditBroken(RibatError):
    """An audit log that does not verify: an entry was edited, removed, inserted, reordered
    or the log was truncated."""


class BrokerError(RibatError):
    """An MQTT broker that cannot be reached or refuses the connection."""


class EntriesRefused(RibatError):
    """An import in which the node refused entries as forged (or altered) or foreign:
    whoever made the file, or carried it, is not to be trusted with the next one."""
