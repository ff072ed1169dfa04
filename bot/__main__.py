"""``python -m bot`` is the same as the ``kahani`` command."""

import sys

from bot.cli import main

sys.exit(main())
