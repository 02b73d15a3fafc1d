"""ribat gateway: bridge a node's sync traffic and telemetry to an MQTT broker."""

import time

import click

from ribat.cli.common import F, clock, port_option


def broker_option(f: F) -> F:
    return click.option(
        "--broker",
        envvar="RIBAT_BROKER",
        required=True,
        metavar="URL",
        help="The MQTT broker, as mqtt://HOST:PORT ($RIBAT_BROKER).",
    )(f)


def broker_address(url: str) -> tuple[str, int]:
    from ribat.gateway.broker import parse_broker

    try:
        return parse_broker(url)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--broker") from None


@click.command()
@port_option
@broker_option
@click.option(
    "--interval", default=2.0, show_default=True, metavar="S",
    help="Seconds between rounds when the broker brings nothing.",
)  # fmt: skip
@click.option("--rounds", type=int, metavar="N", help="Stop after N rounds (default: never).")
def gateway(port: str | None, broker: str, interval: float, rounds: int | None) -> None:
    """Bridge a node to an MQTT broker: publish its own entries and its summary, give it
    the entries the other nodes published, witness their audit heads, send telemetry.

    Runs until Ctrl-C. The broker sees sealed entries and summaries only.
    """
    from ribat import ports
    from ribat.device.client import connect
    from ribat.gateway.bridge import Gateway

    host, broker_port = broker_address(broker)
    ports.resolve(port)  # a clear error now for a port that is not there
    # resolved again each round: a virtual board restarted has a new device
    gw = Gateway(
        lambda: connect(ports.resolve(port)), host, broker_port,
        log=lambda m: click.echo(f"{clock(time.time())}  {m}", err=True),
    )  # fmt: skip
    click.echo(f"{gw.name}: bridged to {host}:{broker_port} under {gw.root}", err=True)
    try:
        time.sleep(0.5)  # the retained messages the subscription brings, before round 1
        done = rounds if rounds is not None else -1
        gw.run(interval, until=lambda: gw.counters.rounds == done)
    finally:
        gw.close()
