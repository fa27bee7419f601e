"""A small thread-safe LRU map, shared by the reward caches (`rewards`, `code_execution`).

Standard-library only: `functools.lru_cache` memoises a function, while these caches are filled from worker results
computed elsewhere, so they need an explicit `get` / `put`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class LRU:
    """Thread-safe map of at most `maxsize` entries; the least recently used entry goes first. `get` returns `None`
    for a missing key (store no `None` values)."""

    def __init__(self, maxsize: int):
        self.maxsize, self._data, self._lock = maxsize, OrderedDict(), threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return len(self._data)
