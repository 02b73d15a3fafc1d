# ribat node firmware. The version is the deploy's: see the slot's manifest.json.
