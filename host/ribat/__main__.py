"""python -m ribat: the same as the ribat command."""

import sys

from ribat.cli import main

sys.exit(main())
