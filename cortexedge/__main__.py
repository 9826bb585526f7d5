"""`python -m cortexedge` runs the CLI."""

import sys

from cortexedge.cli.main import main

sys.exit(main())
