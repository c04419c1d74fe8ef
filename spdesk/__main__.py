"""``python -m spdesk`` behaves like the ``spdesk`` command."""

import sys

from spdesk.cli import main

sys.exit(main())
