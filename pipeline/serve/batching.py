"""Dynamic batching of signature calls, as TF Serving's batching does.

Requests wait in a bounded queue (`max_queue` rows; a full queue refuses at once, the
server answers 503). One worker takes the oldest waiting request and every waiting
request that can share its call: the same model version, signature and sampling settings
(the signature's sampling arguments are scalars). It waits at most `timeout` seconds from
the oldest request's arrival for the batch to reach `max_batch` rows, then calls the model
in a thread, so the event loop (health checks, new requests) goes on meanwhile; requests
that arrive during a call form the next batch.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class QueueFull(Exception):
    """The batching queue holds `max_queue` rows already."""


@dataclass
class _Waiting:
    key: tuple
    texts: list
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Batches `model.call(signature, texts, sampling)` calls.

    Args:
        max_batch: the most rows of one call.
        timeout: the longest a request waits for others to join its batch, in seconds.
        max_queue: the most rows waiting.
    """

    def __init__(self, max_batch: int, timeout: float, max_queue: int):
        self.max_batch, self.timeout, self.max_queue = max_batch, timeout, max_queue
        self.calls = 0  # model calls made (the tests count them)
        self._waiting: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmpipe-batch")
        self._worker: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        """Rows waiting."""
        return sum(len(item.texts) for item in self._waiting)

    async def submit(self, model, signature: str, texts: list, sampling: tuple = ()) -> list:
        """Call `signature` of `model` on `texts`, batched with other requests.

        Returns:
            One result per text.

        Raises:
            QueueFull: the queue has no room for these rows.
        """
        if self.queued + len(texts) > self.max_queue:
            raise QueueFull(f"the queue is full ({self.max_queue} rows waiting)")
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())
        item = _Waiting((model, signature, sampling), list(texts),
                        asyncio.get_running_loop().create_future())
        self._waiting.append(item)
        self._arrived.set()
        return await item.future

    async def _work(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if not self._waiting:
                continue
            key = self._waiting[0].key
            deadline = self._waiting[0].arrived + self.timeout
            while self._rows(key) < self.max_batch and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
                self._arrived.clear()
            await self._run(self._take(key))
            if self._waiting:
                self._arrived.set()

    def _rows(self, key: tuple) -> int:
        return sum(len(item.texts) for item in self._waiting if item.key == key)

    def _take(self, key: tuple) -> list[_Waiting]:
        """The oldest requests of `key` up to `max_batch` rows (the first one however big)."""
        batch, rows = [], 0
        for item in list(self._waiting):
            if item.key == key and (not batch or rows + len(item.texts) <= self.max_batch):
                batch.append(item)
                rows += len(item.texts)
                self._waiting.remove(item)
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        model, signature, sampling = batch[0].key
        texts = [text for item in batch for text in item.texts]
        self.calls += 1
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, model.call, signature, texts, sampling)
        except Exception as err:  # noqa: BLE001  (each request gets the model's error)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        start = 0
        for item in batch:
            if not item.future.done():  # its client went away
                item.future.set_result(results[start:start + len(item.texts)])
            start += len(item.texts)

    async def close(self) -> None:
        """Stop the worker and its thread."""
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=True)
