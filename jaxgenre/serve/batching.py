"""Micro-batching: requests from many HTTP handlers share one model's jitted batches.

A `MicroBatcher` owns one worker thread. Handlers `submit` an item and await its future; the
worker takes the first waiting item, then up to `max_items - 1` more that arrive within
`max_wait_s`, and runs them together through `process` (which pads them to the model's fixed
batch shapes, compiled at warm-up). The queue is bounded: when it is full `submit` raises
`QueueFull` at once (the service answers 503 with Retry-After), so load never piles up in
memory. One thread per model keeps the device's work in order and the host's memory bounded;
JAX releases the GIL while it computes, so the HTTP handlers stay responsive.
"""
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


class QueueFull(Exception):
    """The batcher's queue holds `queue_size` items: the caller should retry later."""


class MicroBatcher:
    """Runs `process(items) -> results` (one result per item, in order) on a worker thread.

    max_items: the most items in one call (1 turns batching off: each request alone).
    max_wait_s: how long the worker waits for more items once one is there.
    queue_size: items waiting at most; `submit` beyond that raises QueueFull.
    on_depth: called with the number of waiting items whenever it changes (a gauge).
    """

    def __init__(self, process: Callable[[Sequence[Any]], Sequence[Any]], max_items: int,
                 max_wait_s: float, queue_size: int, name: str,
                 on_depth: Callable[[int], None] = lambda depth: None):
        self._process, self.max_items, self.max_wait_s = process, max_items, max_wait_s
        self._queue = queue.Queue(maxsize=queue_size)
        self._on_depth = on_depth
        self._depth_lock = threading.Lock()  # the gauge reports the depth after the last change
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> concurrent.futures.Future:
        """Queues `item`; the future holds its result, or the exception `process` raised.
        Raises QueueFull at once when `queue_size` items wait."""
        future = concurrent.futures.Future()
        with self._depth_lock:
            try:
                self._queue.put_nowait((item, future))
            except queue.Full:
                raise QueueFull from None
            self._on_depth(self._queue.qsize())
        return future

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout_s: float = 60.0) -> None:
        """Stops the worker after the items already queued (waits at most `timeout_s`)."""
        if self.alive():
            try:
                self._queue.put((None, None), timeout=timeout_s)
            except queue.Full:
                return
            self._thread.join(timeout_s)

    def _take(self) -> list:
        """The next batch: blocks for one item, then gathers what arrives within max_wait_s."""
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_items and batch[-1][1] is not None:
            try:
                batch.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0.0)))
            except queue.Empty:
                break
        with self._depth_lock:
            self._on_depth(self._queue.qsize())
        return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            stop = batch[-1][1] is None
            batch = [(item, future) for item, future in batch
                     if future is not None and future.set_running_or_notify_cancel()]
            try:
                results = self._process([item for item, _ in batch]) if batch else []
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(batch)} items gave {len(results)} results.")
            except BaseException as e:  # noqa: BLE001 - handed to each waiting request
                for _, future in batch:
                    future.set_exception(e)
                if not isinstance(e, Exception):
                    raise  # KeyboardInterrupt, SystemExit: the thread ends; liveness fails
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
            if stop:
                return
