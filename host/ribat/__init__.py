"""ribat host library: boards, virtual boards, deploy, and the node protocol.

Nothing in this package prints or exits; the `ribat` command line (ribat.cli) is the only
place that talks to a terminal.
"""

__version__ = "0.1.0"
