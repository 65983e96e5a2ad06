"""Ids: content hashes that are always the same for the same parts, and time-ordered ids for events."""

import hashlib
import time
import uuid


def stable_id(*parts: object) -> str:
    """16 hex characters of sha256 over the parts."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def time_ordered_id() -> str:
    """Local start time to the second, then 48 random bits: sorts by time, unique across processes."""
    # 48 bits: a thousand ids in one second collide with odds of about 2e-9 (24 bits gave 3%)
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:12]
