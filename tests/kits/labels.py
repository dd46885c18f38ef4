"""Key labels that never collide: every test shares one SoftHSM token per process."""

from __future__ import annotations

import uuid


def unique_label(prefix: str) -> str:
    """``prefix`` and 12 random hex digits: a label no other test on the token uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
