"""ribat audit: show, export and verify a node's audit chain."""

import json
from pathlib import Path

import click

from ribat import chain, signed
from ribat.authority import chainverify
from ribat.cli.common import (
    console,
    echo_json,
    json_option,
    open_node,
    port_option,
    since_time,
    when,
    write_output,
)
from ribat.errors import AuditBroken, CellError
from ribat.ops import guard
from ribat.results import AuditEntry


@click.group("audit")
def audit_group() -> None:
    """The node's tamper-evident log of everything done to it."""


def _witness(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    try:
        n = int(seq)
        int(digest, 16)
    except ValueError:
        n, digest = -1, ""
    if n < 1 or len(digest) < 16:
        raise click.BadParameter(
            "give SEQ:HASH, the audit head a host saw (`ribat status`), with 16 or more "
            "hex digits of the hash",
            param_hint="--witness",
        )
    return n, digest


@audit_group.command("show")
@port_option
@click.option("--since", metavar="SEQ|TIME",
              help="Only entries after this sequence number, or since this time (2h, 3d, "
              "2026-11-24T08:00).")  # fmt: skip
@click.option("--event", "events", multiple=True, metavar="EVENT",
              help="Only entries of this event (repeatable): unlock, post, update...")  # fmt: skip
@json_option("One JSON object per entry (per line)")
def show(port: str | None, since: str | None, events: tuple[str, ...], as_json: bool) -> None:
    """List the audit entries."""
    from rich.table import Table

    after_seq = int(since) if since and since.isdigit() else 0
    after_time = since_time(since) if since and not since.isdigit() else 0
    log, _ = guard.read_audit(open_node(port))
    shown = []
    for line in guard.audit_lines(log):
        e = chain.parse(line)
        if e is None:
            continue
        got = AuditEntry.from_line(e, signed.body_of(e))
        late = got.time is None or got.time.timestamp() >= after_time
        if got.seq > after_seq and late and (not events or got.event in events):
            shown.append(got)
    if as_json:
        echo_json(shown)
        return
    table = Table(box=None, pad_edge=False)
    for title in ("seq", "time", "event", "details"):
        table.add_column(title)
    for got in shown:
        if got.event == "checkpoint":
            detail = f"{got.details['folded']} entries folded"
        else:
            detail = " ".join(f"{k}={_readable(v)}" for k, v in got.details.items())
        t = when(got.time, seconds=True) if got.time else ""
        table.add_row(str(got.seq), t, got.event, detail)
    console().print(table)


def _readable(value: object) -> str:
    """A detail as people read it: text as it is, the rest as JSON (not Python's repr)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@audit_group.command("export")
@port_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
def export(port: str | None, file: Path) -> None:
    """Write the node's audit log, exactly as its flash holds it, to FILE (- for standard
    output)."""
    log, meta = guard.read_audit(open_node(port))
    write_output(file, log)
    click.echo(
        f"{len(guard.audit_lines(log))} lines written to {file}; head {meta['seq']}:"
        f"{meta['head']}",
        err=True,
    )


def _looks_like_audit(log: bytes) -> bool:
    """Whether log's first line is an audit entry or checkpoint (JSON with a seq, or a
    signed body): what tells an audit export from any other file."""
    import json

    first = log.lstrip().split(b"\n", 1)[0]
    try:
        doc = json.loads(first)
    except ValueError:
        return False
    return isinstance(doc, dict) and ("seq" in doc or "body" in doc)


@audit_group.command("verify")
@port_option
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--witness",
    metavar="SEQ:HASH",
    help="A head seen earlier (in `ribat status` or telemetry): detects truncation.",
)
def verify(port: str | None, file: Path | None, witness: str | None) -> None:
    """Check the audit chain of a node, or of an exported FILE.

    Names the first entry that was edited, removed, inserted or reordered.
    """
    seen = _witness(witness)
    reported = None
    if file is None:
        log, meta = guard.read_audit(open_node(port))
        reported = (meta["seq"], meta["head"])
    else:
        try:
            log = file.read_bytes()
        except OSError as e:
            raise CellError(f"cannot read {file}: {e.strerror}") from None
        if not _looks_like_audit(log):
            raise CellError(
                f"{file} is not an audit export (`ribat audit export FILE` writes one)"
                + (": it is empty" if not log.strip() else "")
            )
    lines = guard.audit_lines(log)
    problem, start, (seq, head), keyless = chainverify.verify(lines, seen)
    if problem is None and reported is not None and reported[0] == seq and reported[1] != head:
        problem = f"entry {seq} is not the one the node reports as its head: edited"
    if problem is not None:
        raise AuditBroken(f"audit chain broken: {problem}")
    note = ""
    if seen is not None and seen[0] < start:
        note = f" (the witnessed entry {seen[0]} was folded away: not checked)"
    if keyless:
        note += (
            f"; entries up to {keyless} were folded while the node was locked:"
            " no signature vouches for that checkpoint, only heads its peers witnessed"
        )
    console().print(
        f"audit chain verifies: entries {start + 1} to {seq}, head {seq}:{head}{note}"
        if seq
        else "audit chain verifies: empty"
    )
