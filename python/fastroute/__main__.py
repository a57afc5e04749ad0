"""``python -m fastroute``: the command line (see :mod:`fastroute.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
