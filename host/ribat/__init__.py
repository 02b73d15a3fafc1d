"""ribat host library, one folder per layer, each using only those below it:

    (here)      errors, files, and the modules shared with the node (codec, schema,
                entry, signed, chain, ...: symlinks to firmware/ribat)
    device/     a board on a serial port: transport, client (the node protocol), raw REPL
    authority/  the cell administrator's key and signed roster; audit chain checks
    ops/        what a host asks of a node: config, telemetry, keys, journal, sync
    deploy/     the firmware onto a board: plan, image, writer
    sim/        virtual boards          gateway/  a node bridged to an MQTT broker
    simcell/    a virtual cell          ports     finding boards
    cli/        the `ribat` command line

Nothing in this package prints or exits; the `ribat` command line (ribat.cli) is the only
place that talks to a terminal.
"""

__version__ = "0.1.0"
