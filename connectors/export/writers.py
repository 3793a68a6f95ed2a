"""One table's part files in each format: Parquet (Arrow record batches built column by column with the
table's explicit schema), Avro (fastavro) and JSON Lines (``export_json``, the backup's lossless encoding).

A writer starts a new part when the current one holds ``part_bytes`` of data (uncompressed), writes every
part under its temporary name (:func:`~connectors.export.output.temp_path`) and hands the
``(temporary, final)`` names to the exporter, which renames them all once the export is complete.
``retype(new_tree)`` rewrites the parts already written with a wider type, one part at a time and batch by
batch, so memory stays bounded.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import fastavro
import fastavro.write
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors import values
from connectors.export.fit import PageColumns, page_columns
from connectors.export.output import Output, temp_path
from connectors.typemap import arrow as arrow_map
from connectors.typemap import avro as avro_map
from connectors.typemap.jsonschema import validator_json
from connectors.typemap.jsontext import needs_json_text
from connectors.typemap.tree import ObjectType

__all__ = ["COMPRESSIONS", "PartSettings", "TableWriter", "column_types", "writer_class"]

COMPRESSIONS: Final = ("zstd", "snappy", "gzip", "none")
_READ_BACK_ROWS: Final = 8192
_EXPORT: Final = values.ValueFormat.EXPORT
_TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
_IDENTITY: Final = getattr(arrow_map, "_identity")  # noqa: B009 - the type map's "no conversion" marker


@dataclass(frozen=True)
class PartSettings:
    compression: str
    part_bytes: int = 256 << 20
    # Parquet: rows are buffered up to either bound, then written as a row group while the next one is
    # built. Memory holds about three row groups (the one being built, the one being encoded and its encoded
    # pages), so these bound the export's memory whatever the table's size or its documents' width.
    row_group_rows: int = 64 * 1024
    row_group_bytes: int = 32 << 20


Docs = list[dict[str, Any]]


class TableWriter(abc.ABC):
    """The part files of one table in one directory."""

    extension: str = ""

    def __init__(self, out: Output, directory: str, tree: ObjectType, settings: PartSettings) -> None:
        self.out = out
        self.directory = directory
        self.tree = tree
        self.settings = settings
        self.rows = 0
        self._done: list[str] = []  # final paths of the finished parts (written under temp_path)
        self._open_final: str | None = None
        self._part_bytes = 0
        self._setup()

    # --- the format ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _setup(self) -> None:
        """Derive the schema and converters from ``self.tree``."""

    @abc.abstractmethod
    def _open(self, path: str, final: str) -> None: ...

    @abc.abstractmethod
    def _write(self, docs: Docs, columns: PageColumns | None) -> int:
        """Write documents (cut into ``columns`` of the current tree, or None) to the open part; return the
        bytes they added (uncompressed, approximate)."""

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _read_back(self, path: str, tree: ObjectType) -> Iterator[Docs]:
        """The documents of a finished part written with ``tree``, in bounded batches."""

    @abc.abstractmethod
    def columns(self) -> list[dict[str, Any]]:
        """The column types, for the manifest."""

    # --- parts ----------------------------------------------------------------------------------------------

    def _part_name(self, index: int) -> str:
        return f"{self.directory}/part-{index:05d}{self.extension}"

    def write(self, docs: Docs, columns: PageColumns | None = None) -> None:
        """Write a page; ``columns`` (:func:`~connectors.export.fit.page_columns` of the current tree) saves
        cutting it again."""
        if not docs:
            return
        if self._open_final is None:
            final = self._part_name(len(self._done))
            self._open(temp_path(final), final)
            self._open_final, self._part_bytes = final, 0
        self._part_bytes += self._write(docs, columns)
        self.rows += len(docs)
        if self._part_bytes >= self.settings.part_bytes:
            self._finish_part()

    def _finish_part(self) -> None:
        if self._open_final is None:
            return
        self._close()
        self._done.append(self._open_final)
        self._open_final = None

    def retype(self, tree: ObjectType) -> None:
        """Use ``tree`` (wider than the current type) from now on, and rewrite the parts written so far."""
        self._finish_part()
        old = self.tree
        self.tree = tree
        self._setup()
        if not self.rewrites:
            return
        for final in self._done:
            current = temp_path(final)
            rewritten = current + ".retype"
            self._open(rewritten, final)
            for docs in self._read_back(current, old):
                self._write(docs, None)
            self._close()
            self.out.delete(current)
            self.out.move(rewritten, current)

    rewrites: bool = True  # False for a format without a schema in the file (JSON Lines)

    def finish(self) -> list[tuple[str, str]]:
        """Close the open part (an empty table still gets one part, with its schema); return the
        ``(temporary, final)`` paths to rename."""
        if not self._done and self._open_final is None:
            final = self._part_name(0)
            self._open(temp_path(final), final)
            self._open_final = final
        self._finish_part()
        return [(temp_path(final), final) for final in self._done]

    def abort(self) -> None:
        """After a failure: close the open part and remove this table's temporary files (nothing of an
        incomplete export is kept; a killed one's leftovers are removed by the next run)."""
        with contextlib.suppress(Exception):  # the export already failed; its error is the one reported
            if self._open_final is not None:
                self._close()
                self._done.append(self._open_final)
                self._open_final = None
            for final in self._done:
                self.out.delete(temp_path(final))
                self.out.delete(temp_path(final) + ".retype")


# --- Parquet ---------------------------------------------------------------------------------------------


class ParquetWriter(TableWriter):
    extension = ".parquet"

    _pool: ThreadPoolExecutor | None = None

    def _setup(self) -> None:
        self._columns = arrow_map.arrow_columns(self.tree)
        self.schema = pa.schema([c.field for c in self._columns])
        self._plan = [
            (c.source, None if c.convert is _IDENTITY else c.convert, c.field.type) for c in self._columns
        ]

    def _open(self, path: str, final: str) -> None:
        self._stream = self.out.open_output(path)
        compression = self.settings.compression
        self._writer = pq.ParquetWriter(
            self._stream, self.schema, compression="NONE" if compression == "none" else compression
        )
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._in_flight: Future[None] | None = None

    def batch(self, docs: Docs, columns: PageColumns | None = None) -> pa.RecordBatch:
        """Documents -> one record batch: one Python list per column, then ``pa.array`` with its type."""
        if columns is None:
            columns = page_columns(self.tree, docs)
        arrays = []
        for source, convert, arrow_type in self._plan:
            column = columns[source]
            if arrow_type == _TIMESTAMP:
                # _creationTime: floor(ms * 1000) as timestamp(us), vectorized (creation_time_micros' rule).
                ms = pa.array(column, type=pa.float64())
                arrays.append(pc.floor(pc.multiply(ms, 1000.0)).cast(pa.int64()).cast(_TIMESTAMP))
                continue
            if convert is not None:
                column = list(map(convert, column))
            arrays.append(pa.array(column, type=arrow_type))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _write(self, docs: Docs, columns: PageColumns | None) -> int:
        batch = self.batch(docs, columns)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        if (
            self._pending_rows >= self.settings.row_group_rows
            or self._pending_bytes >= self.settings.row_group_bytes
        ):
            self._flush()
        return batch.nbytes

    def _flush(self) -> None:
        """Hand the pending batches to the background thread as one row group. Encoding and compressing it
        (in Arrow, without the GIL) overlaps with reading and building the next pages; at most one row group
        is in flight, so memory stays bounded."""
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
            self._wait()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-row-groups")
            self._in_flight = self._pool.submit(
                self._writer.write_table, table, row_group_size=max(table.num_rows, 1)
            )

    def _wait(self) -> None:
        """Wait for the row group in flight (re-raising its error)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _close(self) -> None:
        try:
            self._flush()
            self._wait()
        finally:
            self._wait_quietly()
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
            self._writer.close()
            self._stream.close()

    def _wait_quietly(self) -> None:
        with contextlib.suppress(Exception):  # after a failure: its error is the one reported
            self._wait()

    def _read_back(self, path: str, tree: ObjectType) -> Iterator[Docs]:
        with self.out.open_input(path) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=_READ_BACK_ROWS):
                yield [arrow_map.arrow_row_to_document(row, tree) for row in batch.to_pylist()]

    def columns(self) -> list[dict[str, Any]]:
        return [_arrow_column(f) for f in self.schema]


def _arrow_column(f: pa.Field) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "type": str(f.type), "nullable": f.nullable}
    metadata = f.metadata or {}
    if metadata.get(b"convex:encoding") == b"json":
        out["encoding"] = "json"
    if b"convex:type" in metadata:
        out["convex_type"] = metadata[b"convex:type"].decode()
    return out


# --- Avro ------------------------------------------------------------------------------------------------

_AVRO_CODECS: Final = {"zstd": "zstandard", "snappy": "snappy", "gzip": "deflate", "none": "null"}


class AvroWriter(TableWriter):
    extension = ".avro"

    def _setup(self) -> None:
        self._schema_json = avro_map.avro_schema(self.tree)
        self._schema = fastavro.parse_schema(self._schema_json)
        self._convert = avro_map.avro_record_patcher(self.tree) or avro_map.avro_record_converter(self.tree)

    def _open(self, path: str, final: str) -> None:
        self._stream = self.out.open_output(path)
        # A sync marker derived from the file's name: the same export gives the same bytes.
        marker = hashlib.blake2b("/".join(final.split("/")[-3:]).encode(), digest_size=16).digest()
        self._writer = fastavro.write.Writer(
            self._stream, self._schema, codec=_AVRO_CODECS[self.settings.compression], sync_marker=marker
        )

    def _write(self, docs: Docs, columns: PageColumns | None) -> int:
        before = self._stream.tell()
        write, convert = self._writer.write, self._convert
        for d in docs:
            write(convert(d))
        return max(self._stream.tell() - before, 1)

    def _close(self) -> None:
        self._writer.flush()
        self._stream.close()

    def _read_back(self, path: str, tree: ObjectType) -> Iterator[Docs]:
        with self.out.open_input(path) as f:
            batch: Docs = []
            for record in fastavro.reader(f):
                batch.append(avro_map.avro_record_to_document(record, tree))  # type: ignore[arg-type]
                if len(batch) >= _READ_BACK_ROWS:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def columns(self) -> list[dict[str, Any]]:
        return [
            {"name": f.get("convex.name", f["name"]), "type": f["type"]} for f in self._schema_json["fields"]
        ]


# --- JSON Lines ------------------------------------------------------------------------------------------

_JSONL_CODECS: Final = {"zstd": ("zstd", ".zst"), "gzip": ("gzip", ".gz"), "none": (None, "")}


class JsonlWriter(TableWriter):
    """One document per line in ``export_json`` (Int64 plain integers, floats always with a point or an
    exponent, NaN/±inf as ``{"$float": …}``, bytes as ``{"$bytes": …}``), keys sorted."""

    rewrites = False

    def _setup(self) -> None:
        codec, suffix = _JSONL_CODECS[self.settings.compression]
        self._codec = codec
        self.extension = ".jsonl" + suffix

    def _open(self, path: str, final: str) -> None:
        raw = self.out.open_output(path)
        self._raw = raw
        self._stream = pa.CompressedOutputStream(raw, self._codec) if self._codec else raw

    def _write(self, docs: Docs, columns: PageColumns | None) -> int:
        data = b"".join([values.wire_bytes(d, _EXPORT) + b"\n" for d in docs])
        self._stream.write(data)
        return len(data)

    def _close(self) -> None:
        self._stream.close()
        if self._stream is not self._raw:
            self._raw.close()

    def _read_back(self, path: str, tree: ObjectType) -> Iterator[Docs]:
        # JSON lines hold any value, so a page never forces a rewrite of earlier parts (rewrites is False).
        raise AssertionError("a JSONL part is never read back")

    def columns(self) -> list[dict[str, Any]]:
        return column_types(self.tree)


def column_types(tree: ObjectType) -> list[dict[str, Any]]:
    """Convex types of a tree's top-level fields (``ValidatorJson``), for formats without their own types."""
    out = []
    for f in tree.fields:
        entry: dict[str, Any] = {"name": f.name, "type": validator_json(f.type), "optional": f.optional}
        if needs_json_text(f.type):
            entry["mixed"] = True
        out.append(entry)
    return out


_WRITERS: Final[dict[str, type[TableWriter]]] = {
    "parquet": ParquetWriter,
    "avro": AvroWriter,
    "jsonl": JsonlWriter,
}


def writer_class(fmt: str) -> type[TableWriter]:
    return _WRITERS[fmt]
