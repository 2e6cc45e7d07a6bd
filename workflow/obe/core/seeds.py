"""Seeds derived from names and numbers, so that a run's random streams (rollouts per step, data
order per epoch, samples per question) can be recreated without global RNG state."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from JSON-serialisable parts (same across processes/platforms)."""
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)
