"""The bounded cache of loaded generators behind ``ganzoo serve``: one entry per model,
checkpoint or export (LRU), reloaded when its file changes; a lock per entry serialises
its forward passes."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from . import models as core

CACHE_SIZE = 16  # generators kept loaded: every zoo model (9 today; the index shows them all) and a few runs'


@dataclass
class Loaded:
    G: Any
    info: dict
    stamp: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelCache:
    """A bounded LRU cache of loaded generators, one per key, safe across threads."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = max(1, int(size))
        self._items: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # how many times a loader ran (tests and the benchmark read it)

    def _hit(self, key: str, stamp: Any) -> Loaded | None:
        item = self._items.get(key)
        if item is not None and item.stamp == stamp:
            self._items.move_to_end(key)
            return item
        return None

    def get(self, key: str, stamp: Any, loader: Callable[[], Any]) -> Loaded:
        with self._lock:
            item = self._hit(key, stamp)
            if item is not None:
                return item
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one load per key at a time; others wait for it
            with self._lock:
                item = self._hit(key, stamp)
                if item is not None:
                    return item
            G = loader()
            self.loads += 1
            item = Loaded(G, core.generator_info(G), stamp)
            with self._lock:
                self._items[key] = item
                self._items.move_to_end(key)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return item

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)
