"""Per-process copies of rows that rarely change (contract specifications), dropped everywhere on a change.

A save or delete bumps one generation in the shared cache (Redis in production) once it commits; a process
looks at that generation once per signal (`refresh`) and drops its copies when it moved. A copy is also
dropped after `MAX_AGE_SECONDS`, so a process that never calls `refresh` (a web process) is never far behind.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

GENERATION_KEY = "justtrades:trading-cache-generation"
MAX_AGE_SECONDS = 60.0
T = TypeVar("T")

_copies: dict[str, tuple[float, Any]] = {}
_generation_seen: object = None


def refresh() -> None:
    """Drop this process's copies if any process changed their rows since the last look (one cache read)."""
    global _generation_seen
    try:
        current = cache.get(GENERATION_KEY)
    except Exception:
        logger.warning("Could not read the cache generation; reading the rows again", exc_info=True)
        current = object()
    if current != _generation_seen:
        _copies.clear()
        _generation_seen = current


def remembered(name: str, load: Callable[[], T]) -> T:
    """This process's copy of `name`, loaded by `load` when missing, dropped or too old."""
    now = time.monotonic()
    found = _copies.get(name)
    if found is not None and now - found[0] < MAX_AGE_SECONDS:
        return found[1]
    value = load()
    _copies[name] = (now, value)
    return value


def changed() -> None:
    """Rows behind the copies changed: drop this process's copies now, every other process's on commit."""
    _copies.clear()

    def bump() -> None:
        try:
            cache.set(GENERATION_KEY, uuid.uuid4().hex, None)
        except Exception:
            logger.warning("Could not bump the cache generation; copies lapse within a minute", exc_info=True)

    transaction.on_commit(bump)


def forget() -> None:
    """Drop this process's copies (tests start so)."""
    global _generation_seen
    _copies.clear()
    _generation_seen = None
