"""``python -m rtmpserver``: the ``rtmpserver`` command (rtmpserver.cli)."""

import sys

from rtmpserver.cli import main

sys.exit(main())
