"""The `ribat` command line: the only part of ribat that prints or exits.

Commands live one group per module and are imported only when run, so `ribat --help`
stays fast. Errors become messages here, in main(), and nowhere else.
"""

import os
import sys

import click

from ribat import __version__, errors

# name: (module, attribute, one-line help shown by `ribat --help` without importing it)
COMMANDS = {
    "boards": (
        "ribat.cli.boards",
        "boards",
        "List serial ports and virtual boards, and the ribat nodes among them.",
    ),
    "install": (
        "ribat.cli.install",
        "install",
        "Put MicroPython on a bare board (UF2 copy, picotool, esptool).",
    ),
    "flash": (
        "ribat.cli.flash",
        "flash",
        "Deploy the ribat firmware onto a board that runs MicroPython.",
    ),
    "release": (
        "ribat.cli.release",
        "release_group",
        "Build and sign firmware releases: what a provisioned node takes.",
    ),
    "signals": (
        "ribat.cli.signals",
        "signals_group",
        "Weak signals: convergences with other partners' reports; lookups.",
    ),
    "check": (
        "ribat.cli.signals",
        "check",
        "Has another partner reported this indicator? (a bounded, audited lookup)",
    ),
    "status": ("ribat.cli.node", "status", "Show a node's state at a glance."),
    "reset": ("ribat.cli.node", "reset", "Restart a node."),
    "config": (
        "ribat.cli.config",
        "config_group",
        "Show, change, export and import a node's configuration.",
    ),
    "telemetry": (
        "ribat.cli.telemetry",
        "telemetry_group",
        "Watch or record a node's live telemetry.",
    ),
    "provision": (
        "ribat.cli.security",
        "provision",
        "Give a fresh node its keys, its operator PIN and its cell.",
    ),
    "identity": (
        "ribat.cli.security",
        "identity_group",
        "Show or export a node's public identity and fingerprint.",
    ),
    "cell": (
        "ribat.cli.cell",
        "cell_group",
        "Create a cell authority, edit its signed roster, load it onto nodes.",
    ),
    "unlock": ("ribat.cli.security", "unlock", "Open an operator session on a node (PIN)."),
    "lock": ("ribat.cli.security", "lock", "End a node's operator session."),
    "pin": ("ribat.cli.security", "pin_group", "Change the operator PIN."),
    "wipe": ("ribat.cli.security", "wipe", "Erase a node's keys and content."),
    "post": ("ribat.cli.journal", "post", "Post a bulletin for the partners it is released to."),
    "list": ("ribat.cli.journal", "list_command", "List the journal's bulletins."),
    "show": ("ribat.cli.journal", "show", "Read a bulletin."),
    "ack": ("ribat.cli.journal", "ack", "Acknowledge a bulletin."),
    "journal": (
        "ribat.cli.journal",
        "journal_group",
        "Journal status; export and import sealed entries between nodes.",
    ),
    "sync": (
        "ribat.cli.sync",
        "sync",
        "Reconcile the journals of two nodes attached to this host.",
    ),
    "gateway": (
        "ribat.cli.gateway",
        "gateway",
        "Bridge a node's sync traffic and telemetry to an MQTT broker.",
    ),
    "metrics": (
        "ribat.cli.metrics",
        "metrics",
        "Serve a node's or a cell's state as Prometheus metrics.",
    ),
    "watch": (
        "ribat.cli.watch",
        "watch",
        "The duty console: a node's alerts, bulletins and health, live.",
    ),
    "audit": ("ribat.cli.audit", "audit_group", "Show, export and verify a node's audit chain."),
    "sim": ("ribat.cli.sim", "sim_group", "Start, list, power-cycle and stop virtual boards."),
}

# Exit status for each kind of error; 1 is anything unexpected, 2 a usage error (click).
EXIT_CODES: dict[type[errors.RibatError], int] = {
    errors.NoBoard: 3,
    errors.SeveralBoards: 3,
    errors.PortBusy: 3,
    errors.PortGone: 4,
    errors.NoAnswer: 4,
    errors.NotRibat: 5,
    errors.Unsupported: 5,
    errors.ProtocolMismatch: 5,
    errors.InvalidConfig: 6,
    errors.DeviceError: 7,
    errors.DeployError: 8,
    errors.SimError: 9,
    errors.Locked: 10,
    errors.WrongPin: 11,
    errors.WrongState: 12,
    errors.Refused: 13,
    errors.CellError: 14,
    errors.AuditBroken: 15,
    errors.BrokerError: 16,
    errors.EntriesRefused: 17,
}
INTERRUPTED = 130
EXIT_MEANINGS = (
    (0, "done"), (1, "an unexpected error (--debug shows where)"), (2, "a usage error"),
    (3, "no board, several boards, or the port held by another program"),
    (4, "the board went away or did not answer"),
    (5, "not a ribat node, or one this host does not support"), (6, "an invalid setting"),
    (7, "the node refused the request"), (8, "a deploy or update did not complete"),
    (9, "a virtual board could not be controlled"), (10, "the node is locked"),
    (11, "a wrong PIN"), (12, "the node is not in the state the request needs"),
    (13, "refused by the node's rules"), (14, "a cell file that cannot be used"),
    (15, "an audit chain that does not verify"), (16, "the broker cannot be reached"),
    (17, "entries refused on import"), (130, "interrupted (Ctrl-C)"),
)  # fmt: skip


def exit_code(e: errors.RibatError) -> int:
    """The exit status of an error: its class's, or the nearest base class's that has one
    (a BoardRestarted is a PortGone)."""
    for kind in type(e).__mro__:
        if kind in EXIT_CODES:
            return EXIT_CODES[kind]
    return 1


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        import importlib

        module, attr, _ = COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, _, text) in COMMANDS.items()])
        with formatter.section("Exit statuses"):
            formatter.write_dl([(str(code), text) for code, text in EXIT_MEANINGS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ribat")
@click.option(
    "--debug",
    is_flag=True,
    envvar="RIBAT_DEBUG",
    help="Show tracebacks, and log the bytes on the wire.",
)
@click.option(
    "--tz",
    envvar="RIBAT_TZ",
    metavar="ZONE",
    help="Show times in this zone (Europe/Paris, UTC; $RIBAT_TZ). Default: the system's.",
)
def cli(debug: bool, tz: str | None) -> None:
    """ribat: flash, configure and watch the nodes of a partner security cell.

    Every command that talks to a board takes --port: a serial device, or sim:NAME for a
    virtual board. Without it, ribat uses the only board it finds ($RIBAT_PORT if set).
    Nodes keep UTC; times show in the operator's zone (--tz).
    """
    from ribat.cli import common
    from ribat.device import transport

    common.set_zone(tz)
    # a port another program holds: who, and how long we wait for it, said at once
    transport.busy_notice = lambda text: click.echo(text, err=True)
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
        transport.wire_log = logging.getLogger("ribat.wire")


def _debugging(args: list[str]) -> bool:
    return "--debug" in args or os.environ.get("RIBAT_DEBUG", "") not in ("", "0")


def main(args: list[str] | None = None, session: object = None) -> int:
    """Run one ribat command line; its exit status. session: the operator session the
    command runs in (`ribat unlock`), as its context object."""
    args = sys.argv[1:] if args is None else args
    if "--debug" in args[1:] and args[0] != "--debug":
        args = ["--debug", *(a for a in args if a != "--debug")]  # after the command too
    try:
        cli.main(args=args, prog_name="ribat", standalone_mode=False, obj=session)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        return INTERRUPTED
    except errors.RibatError as e:
        if _debugging(args):
            import traceback

            traceback.print_exc()
        click.echo(f"error: {e}", err=True)
        return exit_code(e)
    except Exception as e:
        if _debugging(args):
            raise
        click.echo(
            f"error: unexpected {type(e).__name__}: {e} (run with --debug for the "
            "traceback, and please report it)",
            err=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
