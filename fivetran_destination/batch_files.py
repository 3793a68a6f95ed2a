"""Reading Fivetran batch files (fivetran-sdk.md §8, fivetran-destination.md §10.3-10.4).

One streaming pipeline per file, in memory only (decrypted data never touches disk)::

    file -> AES-256-CBC (first 16 bytes = IV, key = keys[path]) + PKCS#7 unpadding
         -> zstd / gzip / no decompression -> UTF-8 text -> csv.reader -> rows as cell lists in header order

Memory stays flat whatever the file size: the cipher and the decompressors work on chunks, the PKCS#7
unpadder holds back only the last block, and rows are yielded in batches. Convex's Rust reader restarted
CBC and unpadded on every 4096-byte read (fivetran-destination.md §13 item 3); here one CBC stream covers
the whole file and the padding is checked once, at its end.

Cells stay strings: a cell equal to the request's ``unmodified_string`` becomes ``UNMODIFIED`` (checked
first, so when both sentinels are equal the cell is unmodified), else a cell equal to ``null_string``
becomes ``None``. Converting strings to Convex values is the type map's job (``connectors.typemap``).

Errors raise ``BatchFileError``: it names the file (basename only: batch paths carry the customer's working
directory), the data row where reading stopped and what to do — never key bytes or cell values.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import io
import itertools
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeVar

import zstandard
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protos import destination_sdk_pb2

AES_KEY_BYTES: Final = 32
AES_BLOCK_BYTES: Final = 16
# Raw reads from the file, and the most decompressed output produced per step.
READ_CHUNK_BYTES: Final = 1 << 20
# zstd's decompressobj has no output limit, so its input is fed in slices to keep each step's output small.
ZSTD_INPUT_SLICE_BYTES: Final = 64 << 10
DEFAULT_ROWS_PER_BATCH: Final = 1000
# A batch is also cut when its cells reach this many characters, so wide rows keep memory flat.
MAX_BATCH_CHARS: Final = 4 << 20
# A single cell may be as large as a whole batch file (at most 100 MB, fivetran-sdk.md §8.1).
MAX_FIELD_BYTES: Final = 128 << 20

# csv.field_size_limit is process-wide; raising it only ever widens what every reader accepts.
if csv.field_size_limit() < MAX_FIELD_BYTES:
    csv.field_size_limit(MAX_FIELD_BYTES)

CONTACT_SUPPORT: Final = "Please contact support if this persists."
CHECK_KEY: Final = (
    "Check that the request's keys entry for this file is the key the file was encrypted with; "
    "if it is, the file is damaged: let Fivetran resend the batch."
)
_BAD_PADDING: Final = (
    "decryption failed: invalid PKCS#7 padding (a wrong key, or a truncated or corrupted file)"
)
RESEND: Final = "The file is damaged or incomplete: let Fivetran resend the batch."


class Compression(IntEnum):
    OFF = destination_sdk_pb2.OFF
    ZSTD = destination_sdk_pb2.ZSTD
    GZIP = destination_sdk_pb2.GZIP


class Encryption(IntEnum):
    NONE = destination_sdk_pb2.NONE
    AES = destination_sdk_pb2.AES


class _Unmodified:
    """The marker for a cell equal to ``unmodified_string``: keep the destination's current value."""

    _instance: _Unmodified | None = None

    def __new__(cls) -> _Unmodified:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNMODIFIED"

    def __reduce__(self) -> str:
        return "UNMODIFIED"


UNMODIFIED: Final = _Unmodified()
_E = TypeVar("_E", Compression, Encryption)
Cell = str | None | _Unmodified
Row = list[Cell]
"""One data row: its cells in header order (``RowBatch.header`` names them)."""


@dataclass(frozen=True)
class BatchFileParams:
    """``FileParams`` of a WriteBatch/WriteHistoryBatch request. The enums stay plain ints here because
    proto3 enums are open: an unknown value is reported when a file is read, naming that file."""

    compression: int
    encryption: int
    null_string: str
    unmodified_string: str

    @classmethod
    def from_proto(cls, params: destination_sdk_pb2.FileParams) -> BatchFileParams:
        return cls(
            compression=int(params.compression),
            encryption=int(params.encryption),
            null_string=params.null_string,
            unmodified_string=params.unmodified_string,
        )


@dataclass(frozen=True)
class RowBatch:
    """Consecutive rows of one file; ``first_row`` is the 1-based data-row number of ``rows[0]``."""

    header: tuple[str, ...]
    rows: list[Row]
    first_row: int

    def dicts(self) -> list[dict[str, Cell]]:
        """The rows as dicts keyed by column name (convenient, but slower than the cell lists)."""
        header = self.header
        return [dict(zip(header, row, strict=True)) for row in self.rows]


class BatchFileError(Exception):
    """A batch file could not be read. ``reason`` says what was wrong, ``action`` what to do."""

    def __init__(self, file_name: str, reason: str, action: str, row: int | None = None) -> None:
        self.file_name = file_name
        self.reason = reason
        self.action = action
        self.row = row
        where = f" (data row {row})" if row is not None else ""
        super().__init__(f"Batch file {file_name}{where}: {reason}. {action}")


class _LayerError(Exception):
    """Raised inside the byte pipeline; turned into a BatchFileError with the file name and row."""

    def __init__(self, reason: str, action: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.action = action


def read_batch_file(
    path: str,
    params: BatchFileParams,
    keys: Mapping[str, bytes],
    rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
) -> Iterator[RowBatch]:
    """Yield the rows of the batch file at ``path`` (opened exactly as given) in batches.

    ``keys`` is the request's map of file path -> AES key; it is only consulted for AES files, with the
    path string exactly as given. The file is closed when the iterator is exhausted or closed.
    """
    name = os.path.basename(path) or path
    compression = _known(Compression, params.compression, name, "compression")
    encryption = _known(Encryption, params.encryption, name, "encryption")
    key = _key_for(path, keys, name) if encryption is Encryption.AES else None
    try:
        handle = open(path, "rb")  # noqa: SIM115  (closed in the finally below, after the last batch)
    except OSError as error:
        raise BatchFileError(
            name,
            f"couldn't open the file ({error.strerror or type(error).__name__})",
            "Check that the path in the request exists on this machine and is readable by the connector.",
        ) from None
    try:
        chunks = _file_chunks(handle)
        if key is not None:
            try:
                _check_last_block(handle, key)
            except _LayerError as error:
                raise BatchFileError(name, error.reason, error.action) from None
            chunks = _decrypted(chunks, key)
        if compression is Compression.ZSTD:
            chunks = _zstd_decompressed(chunks)
        elif compression is Compression.GZIP:
            chunks = _gzip_decompressed(chunks)
        lines = itertools.chain.from_iterable(_text_blocks(chunks))
        yield from _rows(csv.reader(lines), params, name, max(1, rows_per_batch))
    finally:
        handle.close()


def _known(enum: type[_E], value: int, name: str, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(f"{member.name} ({member.value})" for member in enum)
        raise BatchFileError(
            name,
            f"unknown {what} {value} in the request's file_params (this connector knows {known})",
            "The request comes from a newer Fivetran SDK: upgrade the connector.",
        ) from None


def _key_for(path: str, keys: Mapping[str, bytes], name: str) -> bytes:
    key = keys.get(path)
    if key is None:
        raise BatchFileError(
            name,
            "the file is AES-encrypted but the request's keys have no entry for its path",
            "The key provided by Fivetran to decrypt the source data is invalid. " + CONTACT_SUPPORT,
        )
    if len(key) != AES_KEY_BYTES:
        raise BatchFileError(
            name,
            f"the AES key for this file is {len(key)} bytes long, not {AES_KEY_BYTES}",
            "The key provided by Fivetran to decrypt the source data is invalid. " + CONTACT_SUPPORT,
        )
    return key


def _rows(
    reader: Iterator[list[str]], params: BatchFileParams, name: str, per_batch: int
) -> Iterator[RowBatch]:
    rows_read = 0  # data rows handed out so far, for error positions
    try:
        header_row = next(reader, None)
        if not header_row:
            raise BatchFileError(name, "missing file headers (the file has no CSV header row)", RESEND)
        header = tuple(header_row)
        if len(set(header)) != len(header):
            duplicates = sorted({column for column in header if header.count(column) > 1})
            raise BatchFileError(name, f"duplicate column names in the header: {duplicates}", RESEND)
        width = len(header)
        null, unmodified = params.null_string, params.unmodified_string
        batch: list[Row] = []
        first = 1
        chars = 0
        for record in reader:
            if len(record) != width:
                if not record:
                    continue  # a blank line carries no row (empty cells are written quoted)
                raise BatchFileError(
                    name,
                    f"can't deserialize the CSV file: the row has {len(record)} fields, the header {width}",
                    RESEND,
                    rows_read + 1,
                )
            # Most rows hold no sentinel: test with C-level list scans before touching cells one by one.
            # Rows stay the csv module's lists (cells in header order): no per-row dict is built.
            if unmodified in record or null in record:
                batch.append([UNMODIFIED if cell == unmodified else None if cell == null else cell for cell in record])
            else:
                batch.append(record)  # type: ignore[arg-type]  # list[str] is a list of cells
            rows_read += 1
            chars += sum(map(len, record))
            if len(batch) >= per_batch or chars >= MAX_BATCH_CHARS:
                yield RowBatch(header, batch, first)
                first = rows_read + 1
                batch = []
                chars = 0
        if batch:
            yield RowBatch(header, batch, first)
    except _LayerError as error:
        raise BatchFileError(name, error.reason, error.action, rows_read + 1) from None
    except UnicodeDecodeError:
        raise BatchFileError(
            name,
            "the decoded data is not UTF-8 text (wrong compression setting, or a damaged file)",
            RESEND,
            rows_read + 1,
        ) from None
    except csv.Error as error:
        # csv's messages describe the syntax problem, never the field contents.
        raise BatchFileError(
            name, f"can't deserialize the CSV file: {error}", RESEND, rows_read + 1
        ) from None
    except OSError as error:
        raise BatchFileError(
            name,
            f"reading the file failed ({error.strerror or type(error).__name__})",
            CONTACT_SUPPORT,
            rows_read + 1,
        ) from None


def _text_blocks(chunks: Iterator[bytes]) -> Iterator[io.StringIO]:
    """Decode UTF-8 chunks and cut them after their last line break, so every block holds whole lines.

    csv.reader consumes the blocks line by line through StringIO's C iterator (line endings kept, so
    quoted line breaks survive); that is much faster than reading lines from a TextIOWrapper.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending: list[str] = []  # a list, so a huge multi-chunk cell is joined once, not re-copied per chunk
    for chunk in chunks:
        text = decoder.decode(chunk)
        cut = text.rfind("\n") + 1
        if cut == 0:
            pending.append(text)
            continue
        pending.append(text[:cut])
        yield io.StringIO("".join(pending), newline="")
        pending = [text[cut:]]
    pending.append(decoder.decode(b"", final=True))
    rest = "".join(pending)
    if rest:
        yield io.StringIO(rest, newline="")


def _file_chunks(handle: io.BufferedReader) -> Iterator[bytes]:
    while chunk := handle.read(READ_CHUNK_BYTES):
        yield chunk


def _check_last_block(handle: io.BufferedReader, key: bytes) -> None:
    """Check the length and the PKCS#7 padding of an encrypted file before streaming it.

    CBC lets the last block be decrypted alone (its IV is the block before it), so a wrong key or a cut file
    is reported as such up front, instead of as the decompressor or CSV error its garbage would cause first.
    """
    size = os.fstat(handle.fileno()).st_size
    if size < 2 * AES_BLOCK_BYTES or size % AES_BLOCK_BYTES:
        raise _LayerError(
            f"the encrypted file is truncated: {size} bytes is not a 16-byte IV followed by whole 16-byte "
            "AES blocks",
            RESEND,
        )
    handle.seek(size - 2 * AES_BLOCK_BYTES)
    tail = handle.read(2 * AES_BLOCK_BYTES)
    handle.seek(0)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(tail[:AES_BLOCK_BYTES])).decryptor()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        unpadder.update(decryptor.update(tail[AES_BLOCK_BYTES:]) + decryptor.finalize())
        unpadder.finalize()
    except ValueError:
        raise _LayerError(_BAD_PADDING, CHECK_KEY) from None


def _decrypted(chunks: Iterator[bytes], key: bytes) -> Iterator[bytes]:
    """AES-256-CBC over the whole stream after a 16-byte IV, then PKCS#7 unpadding checked at the end."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= AES_BLOCK_BYTES:
            break
    if len(head) < AES_BLOCK_BYTES:
        raise _LayerError(
            f"the encrypted file is truncated: {len(head)} bytes, shorter than the 16-byte IV", RESEND
        )
    iv, first = head[:AES_BLOCK_BYTES], head[AES_BLOCK_BYTES:]
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()  # holds back the last block
    ciphertext_bytes = len(first)
    if first:
        yield unpadder.update(decryptor.update(first))
    for chunk in chunks:
        ciphertext_bytes += len(chunk)
        plain = unpadder.update(decryptor.update(chunk))
        if plain:
            yield plain
    if ciphertext_bytes == 0:
        raise _LayerError("the encrypted file is truncated: it holds an IV but no encrypted data", RESEND)
    try:
        tail = unpadder.update(decryptor.finalize())
    except ValueError:
        raise _LayerError(
            "the encrypted data is truncated (its length is not a whole number of 16-byte AES blocks)", RESEND
        ) from None
    try:
        tail += unpadder.finalize()
    except ValueError:
        raise _LayerError(_BAD_PADDING, CHECK_KEY) from None
    if tail:
        yield tail


def _zstd_decompressed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Streaming zstd (frames without a content size too), concatenated frames, truncation detected."""
    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    in_frame = False
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                piece, view = view[:ZSTD_INPUT_SLICE_BYTES], view[ZSTD_INPUT_SLICE_BYTES:]
                pending = bytes(piece)
                while pending:
                    in_frame = True
                    out = frame.decompress(pending)
                    if out:
                        yield out
                    if not frame.eof:
                        break
                    # The frame ended inside this piece: what follows is the next frame.
                    pending = frame.unused_data
                    frame = decompressor.decompressobj()
                    in_frame = False
    except zstandard.ZstdError:
        raise _LayerError(
            "the data is not valid zstd (wrong compression setting, or a damaged file)", RESEND
        ) from None
    if in_frame:
        raise _LayerError("the zstd data is truncated (the last frame is incomplete)", RESEND)


def _gzip_decompressed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Streaming gzip (several members too) with bounded output per step, truncation detected."""
    member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    in_member = False
    try:
        for chunk in chunks:
            pending = chunk
            while True:
                if pending:
                    in_member = True
                out = member.decompress(pending, READ_CHUNK_BYTES)
                if out:
                    yield out
                if member.eof:
                    # The member ended: what follows is the next member.
                    pending = member.unused_data
                    member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    in_member = False
                    if not pending:
                        break
                    continue
                pending = member.unconsumed_tail
                # A full-size output may leave more output inside zlib even with no input left: drain it.
                if not pending and len(out) < READ_CHUNK_BYTES:
                    break
    except zlib.error:
        raise _LayerError(
            "the data is not valid gzip (wrong compression setting, or a damaged file)", RESEND
        ) from None
    if in_member:
        raise _LayerError("the gzip data is truncated (the last member is incomplete)", RESEND)


def decode_binary_cell(cell: str) -> bytes:
    """A BINARY cell's bytes: batch files write binary values as standard base64 (fivetran-sdk.md §8.4).

    Raises ValueError (without the cell's contents) when the cell is not valid base64.
    """
    try:
        return base64.b64decode(cell, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a BINARY cell of {len(cell)} characters is not valid base64") from None
