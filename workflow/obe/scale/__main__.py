"""``python -m obe.scale``: the presets' memory tables (obe.scale.tables.main)."""

import sys

from obe.scale.tables import main

sys.exit(main())
