"""``python -m aggregator --help``: settings come from the command line, then the environment."""
import sys

from aggregator.service import main

sys.exit(main())
