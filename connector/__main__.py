"""`python -m connector` runs the command line."""

import sys

from connector.cli.main import main

sys.exit(main())
