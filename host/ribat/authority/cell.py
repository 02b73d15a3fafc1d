"""The cell administrator's side: the authority key and the roster it signs.

A cell directory holds:
    authority.key   the authority's Ed25519 secret key, hex (mode 0600; never sent anywhere)
    authority.pub   its public key, hex: what `ribat provision` pins on each node
    roster.json     the current roster, signed (ribat.signed, kind "roster")

The cell's id is the authority's fingerprint. A roster body is
    {"cell": id, "version": n, "t": unix time, "members": [{"partner", "name", "fp",
     "sign", "kx"}...], "releasers": [{"name", "key"}...]}

the releasers being the keys whose signed releases the nodes take (ribat.deploy.bundle)
and every change is a new version, signed whole; nodes refuse any version not above theirs.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ribat import ed25519, signed
from ribat.errors import CellError
from ribat.files import write_whole
from ribat.results import ReleaseKey, Roster, RosterMember

KEY = "authority.key"
PUB = "authority.pub"
ROSTER = "roster.json"
MEMBER_FIELDS = ("partner", "name", "fp", "sign", "kx")


def verify_identity(doc: object) -> dict:
    """The body of a node's identity document, checked against its own signing key."""
    body = signed.body_of(doc)
    if body is None or not all(isinstance(body.get(k), str) for k in MEMBER_FIELDS):
        raise CellError("not a ribat identity document: export one with `ribat identity export`")
    try:
        public = bytes.fromhex(body["sign"])
        kx = bytes.fromhex(body["kx"])
    except ValueError:
        raise CellError("identity document with malformed keys: export it again") from None
    if signed.verify(signed.IDENTITY, doc, public) is None:
        raise CellError(
            f"identity of {body['name']} is not signed by its own key: altered, export it again"
        )
    if signed.fingerprint(public, kx) != body["fp"]:
        raise CellError(f"identity of {body['name']} has a fingerprint that is not its keys'")
    return body


def read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CellError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CellError(f"{path} is not a {what} ({e})") from None


@dataclass
class Cell:
    path: Path
    public: bytes
    roster: dict  # the body of roster.json

    @property
    def id(self) -> str:
        return signed.fingerprint(self.public)

    @classmethod
    def create(cls, path: Path) -> "Cell":
        if (path / KEY).exists():
            raise CellError(f"{path} already holds a cell authority: use it, or choose another")
        path.mkdir(parents=True, exist_ok=True)
        secret = os.urandom(32)
        public = ed25519.public_key(secret)
        write_whole(path / KEY, (secret.hex() + "\n").encode(), 0o600)
        write_whole(path / PUB, (public.hex() + "\n").encode())
        cell = cls(path, public, {"cell": "", "version": 0, "t": 0, "members": []})
        cell.roster["cell"] = cell.id
        return cell

    @classmethod
    def open(cls, path: Path) -> "Cell":
        try:
            public = bytes.fromhex((path / PUB).read_text().strip())
        except FileNotFoundError:
            raise CellError(
                f"{path} is not a cell directory (no {PUB}): create one with `ribat cell init`"
            ) from None
        except ValueError:
            raise CellError(f"{path / PUB} does not hold a public key") from None
        roster_file = path / ROSTER
        if not roster_file.exists():
            return cls(path, public, {"cell": signed.fingerprint(public), "version": 0,
                                      "t": 0, "members": []})  # fmt: skip
        doc = read_json(roster_file, "signed roster")
        body = signed.verify(signed.ROSTER, doc, public)
        if body is None:
            raise CellError(f"{roster_file} is not signed by this cell's authority: altered?")
        return cls(path, public, body)

    def signed_roster(self) -> bytes:
        """roster.json's bytes: what `ribat cell load` sends."""
        try:
            return (self.path / ROSTER).read_bytes()
        except FileNotFoundError:
            raise CellError(
                f"the cell in {self.path} has no roster yet: "
                "add nodes with `ribat cell roster add`"
            ) from None

    def _secret(self) -> bytes:
        try:
            secret = bytes.fromhex((self.path / KEY).read_text().strip())
        except (FileNotFoundError, ValueError):
            raise CellError(f"no authority key in {self.path / KEY}: cannot sign") from None
        if ed25519.public_key(secret) != self.public:
            raise CellError(f"{self.path / KEY} does not match {self.path / PUB}")
        return secret

    def _publish(self, members: list, releasers: list | None = None) -> dict:
        if releasers is None:
            releasers = self.releasers
        body = {"cell": self.id, "version": self.roster["version"] + 1,
                "t": int(time.time()), "members": members}  # fmt: skip
        if releasers:
            body["releasers"] = releasers
        doc = signed.sign(signed.ROSTER, body, self._secret(), self.public)
        write_whole(self.path / ROSTER, (json.dumps(doc) + "\n").encode())
        self.roster = body
        return body

    def add(self, identity: object) -> dict:
        body = verify_identity(identity)
        for m in self.roster["members"]:
            if m["name"] == body["name"] or m["fp"] == body["fp"]:
                raise CellError(
                    f"{body['name']} ({body['fp']}) is already in the roster as {m['name']}"
                    f" ({m['fp']}): remove it first"
                )
        member = {k: body[k] for k in MEMBER_FIELDS}
        return self._publish([*self.roster["members"], member])

    @property
    def releasers(self) -> list:
        return list(self.roster.get("releasers") or [])

    def listing(self) -> Roster:
        """The roster as `cell roster show` tells it."""
        return Roster(
            self.id,
            self.roster["version"],
            [RosterMember(m["partner"], m["name"], m["fp"]) for m in self.roster["members"]],
            [ReleaseKey(r["name"], r["key"]) for r in self.releasers],
        )

    def add_releaser(self, name: str, key: str) -> dict:
        for r in self.releasers:
            if r["name"] == name or r["key"] == key:
                raise CellError(f"the roster has this release key already, as {r['name']}")
        return self._publish(self.roster["members"], [*self.releasers, {"name": name, "key": key}])

    def remove_releaser(self, name: str) -> dict:
        kept = [r for r in self.releasers if r["name"] != name]
        if len(kept) == len(self.releasers):
            raise CellError(f"no release key named {name!r} in the roster")
        return self._publish(self.roster["members"], kept)

    def remove(self, name: str) -> dict:
        members = [m for m in self.roster["members"] if m["name"] != name]
        if len(members) == len(self.roster["members"]):
            raise CellError(f"no node named {name!r} in the roster")
        return self._publish(members)
