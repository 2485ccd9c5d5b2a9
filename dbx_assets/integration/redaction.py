"""Keeping credentials out of anything a person or a log can see."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in text (secrets shorter than 6 chars are left alone)."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    return text
