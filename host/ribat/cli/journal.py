"""ribat post, list, show, ack and journal: the cell's bulletins on a node."""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ribat import entry, indicators
from ribat.cli import common
from ribat.cli.common import (
    console,
    echo_json,
    json_option,
    open_node,
    parse_duration,
    pin_option,
    port_option,
    since_time,
    when,
)
from ribat.cli.security import cell_option
from ribat.ops import guard, signals
from ribat.ops import journal as lib
from ribat.results import AckEvent, Bulletin, ImportOutcome, utc

if TYPE_CHECKING:
    from ribat.device.client import NodeClient

FOLLOW_S = 1.0  # how often --follow looks for new records


def _id_arg(text: str) -> str:
    if entry.parse_id(text) is None:
        raise click.BadParameter(
            f"{text!r} is not an entry id (like 2f5abe99:17)", param_hint="ID"
        )
    return text


@click.command()
@port_option
@pin_option
@click.option(
    "--kind", required=True, type=click.Choice(entry.KINDS), help="What the bulletin is."
)
@click.option(
    "--severity", default="routine", show_default=True, type=click.Choice(entry.SEVERITIES)
)
@click.option(
    "--to",
    "to",
    required=True,
    metavar="MA,FR",
    help="Partners it is released to (yours always is).",
)
@click.option("--title", default="", help="A one-line title.")
@click.option("--body", default=None, help="The text.")
@click.option(
    "--body-file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Read the text from a file (- for standard input).",
)
@click.option("--expires", default="30d", show_default=True, help="Lifetime: 45s, 90m, 12h, 30d.")
@click.option(
    "--ref", "refs", multiple=True, metavar="ID", help="A bulletin this one answers (repeatable)."
)
@click.option(
    "--indicator",
    "given",
    multiple=True,
    metavar="KIND:VALUE",
    help="Something seen, to match with the other partners' reports (repeatable): "
    f"{', '.join(indicators.KINDS)}; e.g. phone:+212612345678. Also lines "
    "'indicator: KIND:VALUE' in the body file.",
)
def post(
    port: str | None,
    pin: str | None,
    kind: str,
    severity: str,
    to: str,
    title: str,
    body: str | None,
    body_file: Path | None,
    expires: str,
    refs: tuple[str, ...],
    given: tuple[str, ...],
) -> None:
    """Post a bulletin, sealed so that only the partners it is released to can read it:
    a title of up to 200 bytes, a body of up to 2,000.

    Prints its id. Needs an unlocked node (a session, or --pin). Its indicators are sealed
    in it; when another partner reported one too within the window, both nodes alert
    (`ribat signals`), and nobody else learns anything.
    """
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    if body_file is not None:
        try:
            raw = sys.stdin.buffer.read() if str(body_file) == "-" else body_file.read_bytes()
            body = raw.decode()
        except (OSError, UnicodeDecodeError) as e:
            raise click.BadParameter(
                f"cannot read {body_file}: {e}", param_hint="--body-file"
            ) from None
    partners = [p.strip().upper() for p in to.split(",") if p.strip()]
    if not partners:
        raise click.BadParameter("name at least one partner, like MA,FR", param_hint="--to")
    ttl = parse_duration(expires, "--expires")
    for ref in refs:
        _id_arg(ref)
    body, from_file = _indicator_lines(body or "")
    for what, text, limit in (
        ("--title", title, lib.TITLE_BYTES),
        ("the body", body, lib.BODY_BYTES),
    ):
        if len(text.encode()) > limit:
            raise click.BadParameter(
                f"{what} takes at most {limit} bytes, this one {len(text.encode())}: "
                "shorten it, or post it in parts (--ref the first)",
                param_hint="--title" if what == "--title" else "--body",
            )
    if not title.strip() and not body.strip():
        raise click.UsageError("a bulletin needs a --title or a body (--body, --body-file)")
    client = open_node(port)
    assert client.info is not None
    try:
        found = [signals.parse(text, client.info.partner) for text in (*given, *from_file)]
    except signals.BadIndicator as e:
        raise click.BadParameter(str(e), param_hint="--indicator") from None
    with guard.unlocked(client, pin):
        out = lib.post(client, kind, severity, partners, title, body, ttl, list(refs), found)
    click.echo(out["id"])
    click.echo(
        f"posted {out['id']}, readable by {out['readers']} nodes, expires {when(out['expires'])}",
        err=True,
    )


def _indicator_lines(body: str) -> tuple[str, list[str]]:
    """The body without its lines "indicator: KIND:VALUE", and those indicators."""
    kept, found = [], []
    for line in body.splitlines(keepends=True):
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() == "indicator":
            found.append(rest.strip())
        else:
            kept.append(line)
    return "".join(kept), found


@click.command("list")
@port_option
@pin_option
@click.option("--since", help="Only bulletins written since: a duration back (2h, 3d) or a date.")
@click.option(
    "--from", "partner", metavar="PARTNER", help="Only bulletins of this partner's nodes."
)
@click.option("--kind", type=click.Choice(entry.KINDS), help="Only bulletins of this kind.")
@click.option(
    "--severity",
    type=click.Choice(entry.SEVERITIES),
    help="Only bulletins of this severity or higher.",
)
@click.option("--unacked", is_flag=True, help="Only others' alerts not acknowledged on this node.")
@click.option("--search", metavar="TEXT", help="Only bulletins whose title contains TEXT.")
@click.option("--limit", type=click.IntRange(1), metavar="N", help="Only the newest N.")
@json_option("One JSON object per bulletin (per line)")
@click.option(
    "--follow", "-f", is_flag=True,
    help="Then print what comes (bulletins, acknowledgements) until Ctrl-C.",
)  # fmt: skip
def list_command(
    port: str | None,
    pin: str | None,
    since: str | None,
    partner: str | None,
    kind: str | None,
    severity: str | None,
    unacked: bool,
    search: str | None,
    limit: int | None,
    as_json: bool,
    follow: bool,
) -> None:
    """List the journal's bulletins: titles where this node may read them, and who
    acknowledged each (acknowledgements are public: a locked node shows them too).

    Locked, only what every relay sees (ids, origins, expiries); --since, --kind,
    --severity and --search then match nothing, as nothing can be read.
    """
    client = open_node(port)
    me = client.info.name if client.info else None
    filters = lib.list_filters(since_time(since), partner and partner.upper(), kind)
    enough = entry.SEVERITIES[entry.SEVERITIES.index(severity) :] if severity else ()

    def wanted(b: Bulletin) -> bool:
        if severity is not None and b.severity not in enough:
            return False
        if unacked and not (b.awaiting_ack and b.node != me):
            return False
        return search is None or search.lower() in (b.title or "").lower()

    with guard.unlocked(client, pin):
        got, last = lib.records_after(client, -1, **filters)
        shown = [b for b in lib.bulletins(got) if wanted(b)]
        if limit is not None:
            shown = shown[-limit:]
        _print_bulletins(shown, as_json)
        if follow:
            _follow(client, last, filters, wanted, as_json)


def _follow(
    client: "NodeClient", last: int, filters: dict, wanted: Callable[[Bulletin], bool],
    as_json: bool,
) -> None:  # fmt: skip
    """Print what the node stores from now on: each bulletin the filters keep, and each
    acknowledgement; until Ctrl-C."""
    # (Ctrl-C ends it: exit status 130, as everywhere)
    while True:
        time.sleep(FOLLOW_S)
        if client.request("status")["records"] - 1 <= last:
            continue
        got, last = lib.records_after(client, last, **filters)
        for item in got:
            if item.get("k") == entry.SIGNAL:
                continue  # the node's own bookkeeping: `ribat signals` tells what matters
            if item.get("k") == entry.ACK:
                for ref in item.get("r", ()):
                    ack = AckEvent(ref, item["by"], item["from"], utc(item["t"]))  # type: ignore[arg-type]
                    if as_json:
                        echo_json(ack)
                    else:
                        click.echo(f"{when(ack.time)}  {ref} acknowledged by {ack.node}")
                continue
            b = Bulletin.from_node({**item, "acks": []})
            if not wanted(b):
                continue
            if as_json:
                echo_json(b)
            elif b.state == "readable":
                click.echo(
                    f"{when(b.written or b.expires)}  {b.id}  {b.partner} {b.node}  "
                    f"{b.kind} ({b.severity})  {b.title}"
                )
            else:
                click.echo(f"{b.id}  {b.partner} {b.node}  {b.state}")


def _print_bulletins(shown: list[Bulletin], as_json: bool) -> None:
    if as_json:
        echo_json(shown)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for title in ("id", "written", "from", "kind", "severity", "title", "acknowledged by",
                  "expires"):  # fmt: skip
        table.add_column(title)
    for b in shown:
        who = f"{b.partner} {b.node}"
        acked = ", ".join(f"{a.node} {when(a.time)}" for a in b.acknowledgements) or "-"
        if b.state == "readable":
            mark = " [bold red]*[/]" if b.awaiting_ack else ""
            written = when(b.written or b.expires)
            table.add_row(b.id, written, who, b.kind, (b.severity or "") + mark, b.title, acked,
                          when(b.expires))  # fmt: skip
        else:
            what = {"expired": "expired", "held": "held (gap)", "fork": "fork evidence"}
            table.add_row(b.id, "", who, what.get(b.state, "sealed"), "", "", acked,
                          when(b.expires))  # fmt: skip
    console().print(table)
    if not shown:
        click.echo("no bulletins", err=True)
    elif any(b.awaiting_ack for b in shown):
        click.echo("* not acknowledged on this node yet (`ribat ack ID`)", err=True)


@click.command()
@port_option
@pin_option
@click.argument("entry_id", metavar="ID")
@json_option("The bulletin as JSON")
def show(port: str | None, pin: str | None, entry_id: str, as_json: bool) -> None:
    """Read a bulletin (if it is released to this node's partner)."""
    _id_arg(entry_id)
    client = open_node(port)
    with guard.unlocked(client, pin):
        b = lib.show(client, entry_id)
    if as_json:
        echo_json(b)
        return
    click.echo(f"{b.id}  {b.kind} ({b.severity})  from {b.partner} {b.node}")
    written = when(b.written) if b.written else "?"
    click.echo(f"written {written}, expires {when(b.expires)}, to {','.join(b.to or ())}")
    acked = "acknowledged on this node" if b.acknowledged_here else "not acknowledged here"
    click.echo(acked if b.severity != "routine" else "routine: no acknowledgement asked")
    if b.refs:
        click.echo(f"refers to {', '.join(b.refs)}")
    if b.indicators:
        click.echo(f"indicators {', '.join(b.indicators)}")
    if b.title:
        click.echo(f"\n{b.title}")
    if b.body:
        click.echo(f"\n{b.body}")


@click.command()
@port_option
@pin_option
@click.argument("entry_id", metavar="ID")
def ack(port: str | None, pin: str | None, entry_id: str) -> None:
    """Acknowledge a bulletin: an entry this node signs, which its author and the cell
    see (as the board's button does for every pending alert)."""
    _id_arg(entry_id)
    client = open_node(port)
    with guard.unlocked(client, pin):
        out = lib.ack(client, entry_id)
    if out.get("already"):
        click.echo(f"{entry_id} was acknowledged on this node already", err=True)
        return
    click.echo(f"{entry_id} acknowledged ({out['entry']})", err=True)


@click.group("journal")
def journal_group() -> None:
    """The journal's state, and moving its sealed entries between nodes."""


@journal_group.command("status")
@port_option
@json_option("The status as JSON")
def status(port: str | None, as_json: bool) -> None:
    """Each origin's chain as this node holds it: head, held gaps, forks; free flash."""
    info = lib.status(open_node(port))
    if as_json:
        echo_json(info)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for title in ("origin", "node", "head", "held", "forks", "head digest"):
        table.add_column(title)
    for o in info.origins:
        forks = f"[bold red]{o.forks}[/]" if o.forks else "0"
        who = f"{o.partner} {o.node}" if o.node else "(not in roster)"
        table.add_row(o.fingerprint, who, str(o.head), str(o.held), forks, o.head_digest[:16])
    console().print(table)
    click.echo(
        f"{info.entries} entries, {info.flash_free_bytes // 1024} KB free "
        f"({info.flash_reserved_bytes // 1024} KB of it kept for a firmware deploy)"
    )


@journal_group.command("export")
@port_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--since",
    "since_text",
    metavar="ORIGIN:SEQ,...",
    help="Only entries after these (as in entry ids).",
)
def export_command(port: str | None, file: Path, since_text: str | None) -> None:
    """Write the node's sealed entries to FILE (- for standard output), for `ribat journal
    import` on another node.

    The file holds what any relay may see: headers and ciphertext.
    """
    client = open_node(port)
    info = lib.status(client)
    since: dict[str, int] = {}
    if since_text:
        try:
            since = lib.parse_vector(since_text, info.origins)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--since") from None
    raws = lib.export(client, since)
    assert client.info is not None
    head = {
        "cell": info.cell,
        "node": info.fingerprint,
        "name": client.info.name,
        "partner": client.info.partner,
        "t": int(time.time()),
        "since": since,
        "entries": len(raws),
    }
    common.write_output(file, lib.file_bytes(head, raws))
    click.echo(f"{len(raws)} entries written to {file}", err=True)


@journal_group.command("import")
@port_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option("One JSON object per entry (per line)")
def import_command(port: str | None, file: Path, as_json: bool) -> None:
    """Give the node the sealed entries of FILE; report what became of each.

    Outcomes: stored, duplicate, gap (held for its predecessor), fork (evidence kept),
    forged (or altered), foreign (origin not in the roster), expired (header kept). Exit
    status 17 if any entry was refused as forged or foreign.
    """
    from ribat.errors import CellError

    head, raws = lib.read_file(file)
    client = open_node(port)
    cell = guard.identity(client).get("cell")
    if head.get("cell") != cell:
        raise CellError(
            f"{file} comes from cell {head.get('cell')}, this node is in cell {cell}: "
            "nothing imported"
        )
    results = lib.import_entries(client, raws, f"{head.get('name')} ({head.get('partner')})")
    tally: dict[str, int] = {}
    for entry_id, outcome in results:
        tally[outcome] = tally.get(outcome, 0) + 1
        if as_json:
            echo_json(ImportOutcome(entry_id, outcome))
        elif outcome != "duplicate":
            click.echo(f"{entry_id} {outcome}")
    summary = ", ".join(f"{n} {name}" for name, n in sorted(tally.items()))
    refused = tally.get("forged", 0) + tally.get("foreign", 0)
    if refused:
        from ribat.errors import EntriesRefused

        raise EntriesRefused(
            f"{len(results)} entries ({summary}): {refused} refused as forged or foreign; "
            f"the rest were taken: find who made or carried {file}"
        )
    click.echo(f"{len(results)} entries: {summary or 'none'}", err=True)


@journal_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@cell_option
def verify_command(file: Path, cell_dir: Path) -> None:
    """Check an export FILE on this host: each origin's chain unbroken and signed by it,
    each content its header's. Needs no node and no key but the roster's public ones."""
    from ribat.authority.cell import Cell
    from ribat.errors import AuditBroken

    _, raws = lib.read_file(file)
    problems = lib.verify(raws, entry.signing_keys(Cell.open(cell_dir).roster["members"]))
    if problems:
        raise AuditBroken(f"{file} does not verify: {problems[0]} ({len(problems)} problems)")
    click.echo(f"{file}: {len(raws)} entries verify", err=True)
