"""Bounded hand-over queues between a capture thread and the engine."""
from __future__ import annotations

import collections
import threading
from typing import Any, Optional

END = object()  # put by a source when it has nothing more to give


class DropOldestQueue:
    """A bounded queue whose `put` drops the oldest item when full (and counts it).

    With `block_when_full=True` it waits instead (a file read as fast as possible:
    the reader may not run ahead and nothing is dropped).
    """

    def __init__(self, capacity: int, block_when_full: bool = False):
        self.capacity = max(1, int(capacity))
        self.block_when_full = block_when_full
        self.dropped = 0
        self._last_dropped: Any = None  # the item the latest put() dropped (take_last_dropped)
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any, timeout_s: Optional[float] = None) -> bool:
        """Add `item`; False when the queue was closed (the consumer has gone)."""
        with self._cond:
            if self.block_when_full and item is not END:
                self._cond.wait_for(lambda: len(self._items) < self.capacity or self._closed, timeout_s)
            if self._closed:
                return False
            if item is not END and len(self._items) >= self.capacity:
                if self.block_when_full:
                    return False  # timed out while full
                self._last_dropped = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return True

    def take_last_dropped(self) -> Any:
        """The item a put() dropped since the last call (None if none), then forget it:
        a producer can tell which of its items never reached the consumer."""
        with self._cond:
            item, self._last_dropped = self._last_dropped, None
            return item

    def offer(self, item: Any) -> bool:
        """Add `item` only if there is room (nothing dropped); False when full or closed."""
        with self._cond:
            if self._closed or len(self._items) >= self.capacity:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout_s: Optional[float] = None) -> Any:
        """The next item, END, or None when nothing came within `timeout_s`."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) > 0, timeout_s):
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """The consumer stops: wake and release any waiting producer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class CaptureThread:
    """Runs a source on its own daemon thread, feeding `self.queue`.

    Subclasses set `self.queue` and `self.warnings` and define `_run_live` and
    `_run_file`. Whatever happens inside them, the queue ends with END, so the
    consumer never waits for a thread that died: the failure becomes a warning.
    """

    thread_name = "capture"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> CaptureThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        try:
            if self.source.live:
                self._run_live()
            else:
                self._run_file()
        except Exception as exc:  # a capture thread must never die silently
            self.warnings.append(f"{self.thread_name} stopped: {type(exc).__name__}: {exc}")
        finally:
            self.queue.put(END)
