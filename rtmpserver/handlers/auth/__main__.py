"""``python -m rtmpserver.handlers.auth``."""

import sys

from rtmpserver.handlers.auth.cli import main

sys.exit(main())
