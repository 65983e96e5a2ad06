"""Content-hash ids: the same parts always give the same id."""

import hashlib


def stable_id(*parts: object) -> str:
    """16 hex characters of sha256 over the parts."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]
