"""A tiny time-bounded cache for serialized responses of one API process."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable


class ResponseCache:
    def __init__(self, ttl: float, capacity: int = 10_000) -> None:
        self.ttl, self.capacity = ttl, capacity
        self._items: dict[Hashable, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        item = self._items.get(key)
        if item is not None and item[0] > time.monotonic():
            return item[1]
        return None

    def put(self, key: Hashable, value: bytes) -> None:
        with self._lock:
            if len(self._items) >= self.capacity:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, value)
