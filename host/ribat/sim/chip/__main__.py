"""`python -m ribat.sim.chip` (`make chip`): set up the emulated RP2040 as far as this
machine allows (rp2040js from npm), and say what is missing."""

from ribat.errors import SimError
from ribat.sim.chip import RP2040JS, available, install, node

try:
    node()
    install()
except SimError as e:
    print(f"the emulated RP2040 cannot run here: {e}")
else:
    print(available() or f"the emulated RP2040 is ready (rp2040js {RP2040JS})")
