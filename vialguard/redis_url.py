"""Redis URLs carry the password (compose sets it): never print one as it is."""
from __future__ import annotations

from urllib.parse import urlsplit


def display_redis_url(url: str) -> str:
    """The Redis URL without its credentials, for logs and error messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"
