"""One bounded batcher for every import call (issue #6 item 3).

Records are accumulated and handed to a flush callback when the next record would push the batch over a row
count or a byte size, and before any checkpoint is acknowledged (so a checkpoint never covers records that
were only buffered). The byte size is what the request will carry: a fixed per-request envelope plus, for every
record, its encoded size and a separator. The caller measures records (``len(orjson.dumps(...))``), so the
batcher is generic over the record type and knows nothing about HTTP or the engine.

Used by the CLI imports (``connectors/table_import.py``, ``connectors/backup.py``) and meant for both
destinations (Airbyte: ``import_airbyte_records`` under the 20 MiB body limit; Fivetran:
``apply_fivetran_operations`` chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from connectors.constants import AIRBYTE_IMPORT_BODY_LIMIT, DEFAULT_BODY_LIMIT, FIVETRAN_OPERATIONS_CHUNK_ROWS
from connectors.errors import BadRequestError

__all__ = [
    "DEFAULT_SAFETY_MARGIN",
    "BatchLimits",
    "Batcher",
    "RecordTooLargeError",
]

R = TypeVar("R")
T = TypeVar("T")

# Leave room for what the caller's size estimate does not see (headers are not part of the body, but
# re-encoding by a client library may add a few bytes per record).
DEFAULT_SAFETY_MARGIN: Final = 0.9


@dataclass(frozen=True)
class BatchLimits:
    """When a batch is full. ``max_bytes`` bounds ``envelope_bytes + sum(size + separator_bytes)``."""

    max_rows: int
    max_bytes: int
    envelope_bytes: int = 0
    separator_bytes: int = 1  # "," between JSON array elements, "\n" between lines

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if self.envelope_bytes < 0 or self.separator_bytes < 0:
            raise ValueError("envelope_bytes and separator_bytes must not be negative")
        if self.max_bytes <= self.envelope_bytes + self.separator_bytes:
            raise ValueError("max_bytes must leave room for at least one record after the envelope")

    @classmethod
    def under_body_limit(
        cls,
        body_limit: int,
        *,
        max_rows: int,
        envelope_bytes: int = 0,
        separator_bytes: int = 1,
        margin: float = DEFAULT_SAFETY_MARGIN,
    ) -> BatchLimits:
        """Limits for requests that must stay under a server's body limit, with a safety margin."""
        if not 0 < margin <= 1:
            raise ValueError("margin must be in (0, 1]")
        return cls(max_rows, int(body_limit * margin), envelope_bytes, separator_bytes)

    @classmethod
    def airbyte_records(cls, *, max_rows: int = 10_000, envelope_bytes: int = 0) -> BatchLimits:
        """``import_airbyte_records`` (20 MiB body limit, streaming-import.md §2.5)."""
        return cls.under_body_limit(
            AIRBYTE_IMPORT_BODY_LIMIT, max_rows=max_rows, envelope_bytes=envelope_bytes
        )

    @classmethod
    def fivetran_operations(
        cls, *, max_rows: int = FIVETRAN_OPERATIONS_CHUNK_ROWS, envelope_bytes: int = 2
    ) -> BatchLimits:
        """``apply_fivetran_operations``: Convex's 500-row chunks, under the 8 MiB default body limit so a
        server without our larger limit accepts them too."""
        return cls.under_body_limit(DEFAULT_BODY_LIMIT, max_rows=max_rows, envelope_bytes=envelope_bytes)

    @property
    def max_record_bytes(self) -> int:
        """The largest record that fits in a batch of its own."""
        return self.max_bytes - self.envelope_bytes - self.separator_bytes


class RecordTooLargeError(BadRequestError):
    """One record is larger than a whole request may be; no batching can send it."""

    def __init__(self, table: str, record: str, size: int, limit: int) -> None:
        super().__init__(
            "RecordTooLarge",
            f"{record} for table {table} is {size:,} bytes encoded, more than the {limit:,} bytes one request"
            " may carry. Split or shrink the record (e.g. move large values to file storage).",
        )
        self.table = table
        self.record = record
        self.size = size
        self.limit = limit


class Batcher(Generic[R]):
    """Accumulate records and call ``flush_batch(records)`` with batches that respect ``limits``, in order.

    ``add`` flushes the pending batch first when the new record would not fit, so a batch never exceeds the
    limits. ``checkpoint(ack)`` flushes and only then runs ``ack`` (acknowledge a state message, commit a
    cursor). ``close()`` (or leaving the ``with`` block without an exception) flushes what is left; after an
    exception the pending records are dropped, since a checkpoint never covered them."""

    def __init__(self, limits: BatchLimits, flush_batch: Callable[[Sequence[R]], None]) -> None:
        self.limits = limits
        self._flush_batch = flush_batch
        self._records: list[R] = []
        self._bytes = limits.envelope_bytes
        self.rows_flushed = 0
        self.batches_flushed = 0

    @property
    def pending_rows(self) -> int:
        return len(self._records)

    @property
    def pending_bytes(self) -> int:
        """The body size the pending batch would have (envelope included)."""
        return self._bytes

    def add(self, record: R, encoded_size: int, *, table: str = "", label: str = "A record") -> None:
        """Add one record of ``encoded_size`` bytes; ``table`` and ``label`` name it if it is too large."""
        cost = encoded_size + self.limits.separator_bytes
        if encoded_size > self.limits.max_record_bytes:
            raise RecordTooLargeError(table, label, encoded_size, self.limits.max_record_bytes)
        if self._records and (
            len(self._records) >= self.limits.max_rows or self._bytes + cost > self.limits.max_bytes
        ):
            self.flush()
        self._records.append(record)
        self._bytes += cost
        if len(self._records) >= self.limits.max_rows:
            self.flush()

    def flush(self) -> None:
        """Send the pending records (if any) as one batch."""
        if not self._records:
            return
        batch = self._records
        self._records = []
        self._bytes = self.limits.envelope_bytes
        self._flush_batch(batch)
        self.rows_flushed += len(batch)
        self.batches_flushed += 1

    def checkpoint(self, ack: Callable[[], T]) -> T:
        """Flush every record added so far, then acknowledge: ``ack`` runs only after they were sent."""
        self.flush()
        return ack()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Batcher[R]:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.flush()
