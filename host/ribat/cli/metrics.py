"""ribat metrics: a Prometheus exporter of a node's or a cell's state (ribat.ops.metrics)."""

import time

import click
from click.core import ParameterSource

from ribat.cli.common import port_option


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"{text!r}: give [HOST]:PORT (127.0.0.1:9108; :9108 for every interface)",
            param_hint="--listen",
        )
    return host or "0.0.0.0", int(port)


@click.command()
@port_option
@click.option("--broker", envvar="RIBAT_BROKER", metavar="URL",
              help="Every node of the cell, from its broker: mqtt://HOST:PORT.")  # fmt: skip
@click.option("--cell", "cell_dir", envvar="RIBAT_CELL", metavar="DIR",
              help="The cell directory, for --broker ($RIBAT_CELL).")  # fmt: skip
@click.option("--listen", default="127.0.0.1:9108", show_default=True, metavar="[HOST]:PORT",
              help="Where to serve /metrics (:PORT: every interface).")  # fmt: skip
def metrics(port: str | None, broker: str | None, cell_dir: str | None, listen: str) -> None:
    """Serve Prometheus metrics: a node's health (--port: asked at each scrape), or every
    node's health and the cell's journals, lags, alerts and alarms (--broker: what the
    gateways publish). Until Ctrl-C."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    host, number = _listen(listen)
    registry = CollectorRegistry()
    ctx = click.get_current_context()
    if port is not None and ctx.get_parameter_source("broker") is ParameterSource.ENVIRONMENT:
        broker = None  # --port asks for one node: $RIBAT_BROKER (a cell's shell) is not it
    if broker is not None:
        if port is not None:
            raise click.UsageError("give --port (one node) or --broker (the cell), not both")
        if cell_dir is None:
            raise click.UsageError("--broker needs the cell: --cell DIR ($RIBAT_CELL)")
        from pathlib import Path

        from ribat.authority.cell import Cell
        from ribat.cli.gateway import broker_address
        from ribat.ops.metrics import BrokerCollector

        cell = Cell.open(Path(cell_dir)).id
        registry.register(BrokerCollector(*broker_address(broker), cell))
        what = f"cell {cell} from {broker}"
    else:
        from ribat import ports
        from ribat.device.transport import named
        from ribat.ops.metrics import PortCollector

        name = named(ports.resolve(port))  # a clear error now for a port that is not there
        registry.register(PortCollector(name))
        what = f"the node on {name}"
    try:
        server, _ = start_http_server(number, host, registry)
    except OSError as e:
        raise click.UsageError(f"cannot listen on {listen}: {e.strerror or e}") from None
    shown = f"{host}:{server.server_port}"
    click.echo(f"serving metrics of {what} on http://{shown}/metrics (Ctrl-C stops)", err=True)
    while True:
        time.sleep(3600)
