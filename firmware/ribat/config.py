"""The node's configuration: validated against the shared schema, saved atomically.

Only the keys set explicitly are stored, so a later firmware's new defaults apply to every
key nobody set. A change is checked whole, then written whole, then read back from flash:
what the node reports is what its flash holds.
"""

import json

from ribat import schema, store

PATH = "/cfg/config.json"


class Config:
    def __init__(self, path: str = PATH) -> None:
        self.path = path
        self.values: dict = {}
        self.rev = 0
        self.error: "str | None" = None
        self._load()

    def _load(self) -> None:
        self.values, self.rev, self.error = {}, 0, None
        data = store.read(self.path)
        if data is None:
            return
        try:
            doc = json.loads(data)
            rev, values = doc["rev"], doc["values"]
        except (ValueError, KeyError, TypeError):
            self.error = "configuration file unreadable: defaults in use"
            return
        for key in values:
            # A key an older firmware knew, or a value outside today's bounds, falls back
            # to its default rather than stop the node.
            if schema.check(key, values[key]) is None:
                self.values[key] = values[key]
        self.rev = rev

    def get(self, key: str) -> object:
        if key in self.values:
            return self.values[key]
        entry = schema.find(key)
        return None if entry is None else entry[2]

    def all(self) -> dict:
        values = schema.defaults()
        values.update(self.values)
        return values

    def change(self, updates: dict, unset: list) -> "str | None":
        """Apply all of it or none of it. None on success, else what is wrong."""
        for key in updates:
            problem = schema.check(key, updates[key])
            if problem is not None:
                return problem
        for key in unset:
            if schema.find(key) is None:
                return "unknown key %r" % key
        values = dict(self.values)
        values.update(updates)
        for key in unset:
            values.pop(key, None)
        doc = {"rev": self.rev + 1, "values": values}
        store.write_atomic(self.path, json.dumps(doc).encode())
        self._load()
        return None
