"""`python -m connector` runs the command line."""

import sys

from connector.cli import main

sys.exit(main())
