"""Entry script for frozen builds: the same main() as the ``spdesk`` console script."""

import multiprocessing
import sys

from spdesk.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
