"""Every --json speaks the schema docs/json.md writes down: full names, ISO 8601 times,
one schema per command. The page, the classes of ribat.results and each command's output
are held equal here, the commands run against a cell of virtual boards."""

import dataclasses
import datetime
import json
import re
import types
import typing
from pathlib import Path

from conftest import PIN, NewSim, make_cell, release_bundle, ribat
from ribat import results, sim

DOC = Path(__file__).parent.parent / "docs" / "json.md"


def documented() -> dict[str, list[str]]:
    """docs/json.md's schemas: the fields of each, in order."""
    out: dict[str, list[str]] = {}
    name = None
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            name = line[4:].strip()
            out[name] = []
        elif name and (m := re.match(r"\| `(\w+)` \|", line)):
            out[name].append(m.group(1))
    return out


def reachable() -> list[type]:
    """The classes of every command's schema, and those nested in them."""
    seen: list[type] = []

    def visit(cls: type) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for hint in typing.get_type_hints(cls).values():
            for inner in _inner(hint):
                if dataclasses.is_dataclass(inner):
                    visit(inner)  # type: ignore[arg-type]

    for cls in results.SCHEMAS.values():
        visit(cls)
    return seen


def _inner(hint: object) -> list:
    args = typing.get_args(hint)
    return [hint] if not args else [t for a in args for t in _inner(a)]


def conforms(doc: object, cls: type, where: str = "") -> None:
    """doc is cls's JSON document: its fields in order, each of its type, times ISO 8601
    UTC; nested documents alike."""
    where = where or cls.__name__
    assert isinstance(doc, dict), (where, doc)
    names = [f.name for f in dataclasses.fields(cls)]
    assert list(doc) == names, (where, list(doc), names)
    hints = typing.get_type_hints(cls)
    for name in names:
        _check(doc[name], hints[name], f"{where}.{name}")


def _check(value: object, hint: object, where: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            assert type(None) in args, (where, "null")
            return
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is datetime.datetime:
        assert isinstance(value, str) and value.endswith("Z"), (where, value)
        datetime.datetime.fromisoformat(value)
    elif dataclasses.is_dataclass(hint):
        conforms(value, hint, where)  # type: ignore[arg-type]
    elif origin is list:
        assert isinstance(value, list), (where, value)
        for i, v in enumerate(value):
            _check(v, args[0], f"{where}[{i}]")
    elif origin is dict or hint is dict:
        assert isinstance(value, dict), (where, value)
        for k, v in value.items():
            if args:
                _check(v, args[1], f"{where}.{k}")
    elif hint is float:
        assert isinstance(value, (int, float)), (where, value)
    else:
        assert isinstance(value, hint), (where, value, hint)  # type: ignore[arg-type]


def test_the_page_and_the_classes_agree() -> None:
    pages = documented()
    for cls in reachable():
        fields = [f.name for f in dataclasses.fields(cls)]
        assert pages.get(cls.__name__) == fields, f"docs/json.md's {cls.__name__}: {fields}"
    text = DOC.read_text()
    for command, cls in results.SCHEMAS.items():
        assert re.search(rf"`ribat {command}\b.*`{cls.__name__}`", text), command


def lines(*args: str) -> list:
    r = ribat(*args)
    assert r.code == 0, (args, r.err)
    return [json.loads(line) for line in r.out.splitlines()]


def test_every_json_output_speaks_its_schema(new_sim: NewSim, tmp_path: Path) -> None:
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    pa, pf = ("-p", ma.device), ("-p", fr.device)
    ribat("post", *pa, "--pin", PIN, "--kind", "alert", "--severity", "flash", "--to", "FR",
          "--title", "Van", "--body", "white", "--indicator", "plate:AB-123-CD")  # fmt: skip
    ribat("post", *pf, "--pin", PIN, "--kind", "notice", "--to", "MA", "--title", "Seen",
          "--body", "the same", "--indicator", "plate:ab123cd")  # fmt: skip

    (report,) = lines("sync", *pa, *pf, "--json")
    conforms(report, results.SyncReport)
    assert [leg["sent"] for leg in report["legs"]] != [0, 0]

    listed = lines("list", *pf, "--pin", PIN, "--json")
    for b in listed:
        conforms(b, results.Bulletin)
    theirs = next(b for b in listed if b["node"] == "rabat-1")
    assert theirs["state"] == "readable" and theirs["indicators"] == ["plate:AB123CD"]
    assert all(b["state"] == "sealed" for b in lines("list", *pf, "--json"))  # locked
    (shown,) = lines("show", *pf, "--pin", PIN, theirs["id"], "--json")
    conforms(shown, results.Bulletin)
    assert shown["body"] == "white" and shown["written"] < shown["expires"]

    (status,) = lines("status", *pa, "--json")
    conforms(status, results.NodeStatus)
    (journal,) = lines("journal", "status", *pa, "--json")
    conforms(journal, results.JournalStatus)
    export = tmp_path / "ma.rbj"
    assert ribat("journal", "export", *pa, str(export)).code == 0
    for outcome in lines("journal", "import", *pf, str(export), "--json"):
        conforms(outcome, results.ImportOutcome)
    log = lines("audit", "show", *pa, "--json")
    for e in log:
        conforms(e, results.AuditEntry)
    assert [e["seq"] for e in lines("audit", "show", *pa, "--since", "3", "--json")] == [
        e["seq"] for e in log if e["seq"] > 3
    ]
    assert len(lines("audit", "show", *pa, "--since", "1h", "--json")) == len(log)
    assert lines("audit", "show", *pa, "--since", "2099-01-01", "--json") == []
    posts = lines("audit", "show", *pa, "--event", "post", "--since", "10m", "--json")
    assert [e["event"] for e in posts] == ["post"] and posts[0]["details"]["id"]
    (ident,) = lines("identity", *pa, "--json")
    conforms(ident, results.Identity)
    assert ident["name"] == "rabat-1" and ident["state"] == "locked"
    (roster,) = lines("cell", "roster", "show", "--cell", str(tmp_path / "cell"), "--json")
    conforms(roster, results.Roster)
    assert {m["name"] for m in roster["members"]} == {"rabat-1", "paris-1"}

    (lookup,) = lines("check", *pf, "--pin", PIN, "plate:AB123CD", "--json")
    conforms(lookup, results.Lookup)
    assert [r["partner"] for r in lookup["reported_by"]] == ["MA"]
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    while not (found := lines("signals", *pa, "--json")):
        assert datetime.datetime.now() < deadline, "no convergence on rabat-1"
        assert ribat("sync", *pa, *pf).code == 0
    for c in found:
        conforms(c, results.Convergence)

    assert ribat("config", "set", "telemetry.interval_ms", "200", *pa).code == 0
    frames = lines("telemetry", "watch", *pa, "--duration", "1", "--json")
    assert frames
    for f in frames:
        conforms(f, results.TelemetryFrame)
    ours = [
        b for b in lines("boards", "--json") if b["port"] in (f"sim:{ma.name}", f"sim:{fr.name}")
    ]
    assert len(ours) == 2
    for b in ours:
        conforms(b, results.Board)
    virtual = [v for v in lines("sim", "list", "--json") if v["name"] == ma.name]
    conforms(virtual[0], results.VirtualBoard)
    assert virtual[0]["running"] and virtual[0]["port"] == f"sim:{ma.name}"
    (panel,) = lines("sim", "panel", ma.name, "--json")
    conforms(panel, results.Panel)
    assert sim.find(ma.name) is not None


def test_a_release_bundle_as_json(tmp_path: Path) -> None:
    key = tmp_path / "rel.key"
    assert ribat("release", "key", "-o", str(key)).code == 0
    bundle = release_bundle(tmp_path, "0.3.0", key=key)
    (doc,) = lines("release", "show", str(bundle), "--json")
    conforms(doc, results.Release)
    assert doc["version"] == "0.3.0" and doc["builds"][0]["board"] == "virtual-rp2-pico"
    assert doc["signer_key"] and len(doc["signer_key"]) == 64
