"""``python -m obe.analysis ...``: the analysis stage (see ``obe.analysis.cli``)."""

import sys

from obe.analysis.cli import main

sys.exit(main())
