"""Memory per GPU of the presets' jobs, computed from architecture facts (docs/scale.md):
:mod:`obe.scale.plan` computes, :mod:`obe.scale.tables` writes the tables, ``python -m obe.scale``
prints them or regenerates docs/scale.md. The plan's names are this package's."""

from obe.scale.plan import *  # noqa: F401,F403
