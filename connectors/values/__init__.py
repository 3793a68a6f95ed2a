"""Convex values in Python: wire formats, the storage encoding and order-preserving index keys.

Representation (``shared/spec/values-and-ids.md`` §1): ``None`` = Null, ``bool`` = Boolean, ``int`` = Int64
(``bool`` is not an Int64, so checks use ``type(x) is int``), ``float`` = Float64 (NaN payloads, ±inf and
-0.0 preserved), ``str`` = String, ``bytes`` = Bytes, ``list`` = Array, ``dict[str, Value]`` = Object.

Storage: a document is kept as its ``convex_encoded_json`` text with sorted keys (orjson), plus flag bits
saying which special values it contains (Int64, NaN/±inf, -0.0, Bytes). The encoded format is what real
clients ask for, so exporting it is a byte copy; other formats and decoding walk the tree only when a flag
says a special value is present.
Pure functions, no I/O.

One concern a module; import from this package (``from connectors.values import X``), which re-exports them:

- :mod:`.scalars` — ``Value``, the Int64 range, base64 and ``$integer``/``$float``/``$bytes`` payloads.
- :mod:`.depth` — the nesting limit's error and message, ``nesting_depth``, ``load_json`` (JSON text).
- :mod:`.problems` — internal errors that collect the path of a bad value; ``format_path``.
- :mod:`.formats` — ``ValueFormat``, ``parse_format`` and the encoders (``to_*_json``, ``wire_bytes``).
- :mod:`.decoding` — depth-checked decoders (``from_encoded_json``, ``from_export_json``, in-place ones).
- :mod:`.storage` — document validation and the storage encoding (``encode_document``, ``FLAG_*``).
- :mod:`.storage_wire` — stored bytes to a wire format (``storage_to_wire``).
- :mod:`.paths` — ``MISSING`` and ``get_path``.
- :mod:`.index_keys` — order-preserving index keys.
- :mod:`.compare` — ``compare_values``, the Convex total order.
"""

from __future__ import annotations

from connectors.constants import (
    MAX_ARRAY_LEN,
    MAX_DOCUMENT_SIZE,
    MAX_NESTING,
    MAX_OBJECT_FIELDS,
    SYSTEM_FIELDS,
)
from connectors.values.compare import compare_values
from connectors.values.decoding import (
    decode_encoded_object_in_place,
    decode_encoded_value,
    from_encoded_json,
    from_export_json,
)
from connectors.values.depth import (
    JSON_PARSER_MAX_DEPTH,
    NestingTooDeepError,
    load_json,
    nesting_depth,
    too_deep_message,
)
from connectors.values.formats import (
    ValueFormat,
    encode_value,
    parse_format,
    to_clean_json,
    to_encoded_json,
    to_export_json,
    wire_bytes,
)
from connectors.values.index_keys import encode_index_key, index_key_prefix_successor
from connectors.values.paths import MISSING, get_path
from connectors.values.problems import format_path
from connectors.values.scalars import INT64_MAX, INT64_MIN, Value
from connectors.values.storage import (
    FLAG_BYTES,
    FLAG_INT,
    FLAG_NEGZERO,
    FLAG_NONFINITE,
    EncodedDocument,
    decode_document,
    decode_documents,
    encode_document,
)
from connectors.values.storage_wire import storage_to_wire

__all__ = [
    "FLAG_BYTES",
    "FLAG_INT",
    "FLAG_NEGZERO",
    "FLAG_NONFINITE",
    "INT64_MAX",
    "INT64_MIN",
    "JSON_PARSER_MAX_DEPTH",
    "MAX_ARRAY_LEN",
    "MAX_DOCUMENT_SIZE",
    "MAX_NESTING",
    "MAX_OBJECT_FIELDS",
    "MISSING",
    "SYSTEM_FIELDS",
    "EncodedDocument",
    "NestingTooDeepError",
    "Value",
    "ValueFormat",
    "compare_values",
    "decode_document",
    "decode_documents",
    "decode_encoded_object_in_place",
    "decode_encoded_value",
    "encode_document",
    "encode_index_key",
    "encode_value",
    "format_path",
    "from_encoded_json",
    "from_export_json",
    "get_path",
    "index_key_prefix_successor",
    "load_json",
    "nesting_depth",
    "parse_format",
    "storage_to_wire",
    "to_clean_json",
    "to_encoded_json",
    "to_export_json",
    "too_deep_message",
    "wire_bytes",
]
