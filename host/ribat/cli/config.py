"""ribat config: show, get, set, unset, export, import."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ribat import schema
from ribat.cli.common import console, open_node, pin_option, port_option
from ribat.errors import InvalidConfig
from ribat.ops import config as cfg
from ribat.ops import guard

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


@click.group("config")
def config_group() -> None:
    """A node's configuration. Every key, with its type, bounds and meaning, is listed by
    `ribat config show`; changes are checked on the host and on the node, saved
    atomically, and read back."""


def _complete_key(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> "list[CompletionItem]":
    """Shell completion of config keys; for `set`, of a key's value where it has a few."""
    from click.shell_completion import CompletionItem

    given: tuple[str, ...] = tuple(ctx.params.get(param.name or "") or ())
    item = CompletionItem
    if param.name == "pairs" and len(given) % 2 == 1:  # a value: of the key before it
        key: tuple = next((k for k in schema.KEYS if k[0] == given[-1]), ())
        values: tuple = ()
        if key and key[1] == schema.BOOL:
            values = ("true", "false")
        elif key and key[1] == schema.CHOICE:
            values = tuple(key[3])
        return [item(v) for v in values if v.startswith(incomplete)]
    return [item(k[0]) for k in schema.KEYS if k[0].startswith(incomplete)]


def _values(port: str | None) -> tuple[dict, str]:
    client = open_node(port)
    assert client.info is not None
    return cfg.values(client), client.info.name


@config_group.command()
@port_option
@click.option("--json", "as_json", is_flag=True, help="Print {key: value} as JSON.")
def show(port: str | None, as_json: bool) -> None:
    """Every key, its value, and what it means (* marks values set on this node)."""
    values, _ = _values(port)
    if as_json:
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("KEY", "VALUE", "ALLOWED", "MEANING"):
        table.add_column(column, overflow="fold")
    for key, _, default, _ in schema.KEYS:
        value = values.get(key)
        mark = "" if value == default else " *"
        allowed = schema.allowed(schema.find(key))  # type: ignore[arg-type]
        table.add_row(key, cfg.show(value) + mark, allowed, cfg.MEANINGS[key])
    console().print(table)


@config_group.command()
@port_option
@click.argument("key", shell_complete=_complete_key)
def get(port: str | None, key: str) -> None:
    """Print one key's value."""
    cfg.entry(key)
    values, _ = _values(port)
    click.echo(cfg.show(values[key]))


def _report(values: dict, keys: list[str]) -> None:
    for key in keys:
        click.echo(f"{key} = {cfg.show(values[key])}")


@config_group.command("set")
@port_option
@pin_option
@click.argument(
    "pairs", nargs=-1, required=True, metavar="KEY VALUE [KEY VALUE]...",
    shell_complete=_complete_key,
)  # fmt: skip
def set_(port: str | None, pin: str | None, pairs: tuple[str, ...]) -> None:
    """Set one or more keys; all of them are applied, or none.

    On a provisioned node, node.*, pin.*, audit.* and update.* change only in an unlocked session
    (--pin, or inside `ribat unlock`)."""
    if len(pairs) % 2:
        raise click.UsageError(f"{pairs[-1]!r} has no value: give KEY VALUE pairs")
    updates = {
        key: cfg.parse(key, text) for key, text in zip(pairs[::2], pairs[1::2], strict=True)
    }
    values = _change(port, pin, updates, [])
    _report(values, list(updates))
    click.echo("saved and read back from the node's flash", err=True)


def _change(port: str | None, pin: str | None, updates: dict, unset: list[str]) -> dict:
    client = open_node(port)
    with guard.unlocked(client, pin):
        return cfg.change(client, updates, unset)


@config_group.command()
@port_option
@pin_option
@click.argument("keys", nargs=-1, required=True, shell_complete=_complete_key)
def unset(port: str | None, pin: str | None, keys: tuple[str, ...]) -> None:
    """Return keys to their defaults (guarded keys as for `set`)."""
    values = _change(port, pin, {}, list(keys))
    _report(values, list(keys))
    click.echo("saved and read back from the node's flash", err=True)


@config_group.command("export")
@port_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
def export(port: str | None, file: Path) -> None:
    """Write every key's value to FILE (JSON; - for standard output)."""
    values, name = _values(port)
    doc = cfg.export_doc(values, name)
    if str(file) == "-":
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    try:
        cfg.write_export(file, doc)
    except OSError as e:
        raise InvalidConfig(f"cannot write {file}: {e.strerror}") from None
    click.echo(f"exported {len(values)} keys of {name} to {file}", err=True)


@config_group.command("import")
@port_option
@pin_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_(port: str | None, pin: str | None, file: Path) -> None:
    """Set every key in FILE (an export, or a JSON {key: value}); all of them, or none."""
    updates = cfg.read_import(file)
    if not updates:
        raise InvalidConfig(f"{file} sets no keys")
    values = _change(port, pin, updates, [])
    _report(values, sorted(updates))
    click.echo(f"imported {len(updates)} keys from {file}: saved and read back", err=True)
