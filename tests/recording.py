"""A recorder sink for tests: keeps every finished request's record, as metrics or log sinks would see it."""

from __future__ import annotations

import time

from sluicegate.context import RequestRecord


class RecordSink:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def emit(self, record: RequestRecord) -> None:
        self.records.append(record)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def wait(self, count: int, timeout: float = 5.0) -> list[RequestRecord]:
        # Streams are recorded when the gateway closes them, a moment after the client read the last byte.
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.records
