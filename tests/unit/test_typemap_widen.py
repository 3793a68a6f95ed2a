"""``widen``/``value_fits`` of the type map and the export's column-wise page check built on the same rules."""

from __future__ import annotations

import math

from connectors.export.fit import page_columns, table_check
from connectors.shapes import TableShape
from connectors.typemap.jsontext import needs_json_text
from connectors.typemap.tree import (
    ANY,
    BOOLEAN_T,
    BYTES_T,
    FLOAT64_T,
    INT64_T,
    NEVER,
    NULL_T,
    STRING_T,
    ArrayType,
    FieldType,
    Float64Type,
    ObjectType,
    UnionType,
    table_type,
    union_of,
    value_fits,
    widen,
    widen_object,
)


def obj(**fields: object) -> ObjectType:
    out = []
    for name in sorted(fields):
        t = fields[name]
        optional = isinstance(t, tuple)
        out.append(FieldType(name, t[0] if isinstance(t, tuple) else t, optional))  # type: ignore[arg-type]
    return ObjectType(tuple(out))


def test_widen_keeps_structure_where_both_agree() -> None:
    assert widen(INT64_T, INT64_T) == INT64_T
    assert widen(NEVER, STRING_T) == STRING_T and widen(STRING_T, NEVER) == STRING_T
    assert widen(INT64_T, NULL_T) == union_of([NULL_T, INT64_T])
    assert widen(union_of([NULL_T, INT64_T]), INT64_T) == union_of([NULL_T, INT64_T])
    assert widen(Float64Type(False), Float64Type(True)) == Float64Type(True)
    assert widen(ArrayType(INT64_T), ArrayType(NEVER)) == ArrayType(INT64_T)
    merged = widen(obj(a=INT64_T, b=STRING_T), obj(a=INT64_T, c=BYTES_T))
    assert merged == obj(a=INT64_T, b=(STRING_T,), c=(BYTES_T,))
    assert not needs_json_text(merged)


def test_widen_to_a_union_is_json_text_and_stays_so() -> None:
    mixed = widen(INT64_T, STRING_T)
    assert isinstance(mixed, UnionType) and needs_json_text(mixed)
    assert needs_json_text(widen(mixed, BOOLEAN_T))
    # An empty object (JSON text) widened with a typed object stays JSON text.
    assert needs_json_text(widen(ObjectType(), obj(a=INT64_T)))
    assert needs_json_text(widen(ArrayType(mixed), ArrayType(INT64_T)))
    assert widen(ANY, INT64_T) == ANY


def test_widen_object_marks_one_sided_fields_optional() -> None:
    a = table_type("t", [FieldType("x", INT64_T)])
    b = table_type("t", [FieldType("y", FLOAT64_T)])
    w = widen_object(a, b)
    assert w.field("x") == FieldType("x", INT64_T, True) and w.field("y") == FieldType("y", FLOAT64_T, True)
    assert w.field("_id") == a.field("_id")


def test_value_fits_does_not_coerce() -> None:
    assert value_fits(1, INT64_T) and not value_fits(1.0, INT64_T) and not value_fits(True, INT64_T)
    assert value_fits(math.nan, FLOAT64_T) and not value_fits(1, FLOAT64_T)
    assert value_fits(None, union_of([NULL_T, STRING_T])) and not value_fits(None, STRING_T)
    assert value_fits({"a": 1}, obj(a=INT64_T, b=(STRING_T,)))
    assert not value_fits({"a": 1, "z": 2}, obj(a=INT64_T))
    assert not value_fits({}, obj(a=INT64_T))
    assert value_fits([1, 2], ArrayType(INT64_T)) and not value_fits([1, "a"], ArrayType(INT64_T))
    assert value_fits(b"x", ANY)


def _check(docs: list[dict]) -> bool:
    tree = TableShape.from_documents(docs).type_tree("t")
    return table_check(tree)(docs, page_columns(tree, docs))


def test_page_check_accepts_what_the_shape_describes() -> None:
    docs = [
        {"_id": "a", "_creationTime": 1.0, "i": 1, "o": {"k": [1.5]}, "u": 1, "n": None},
        {"_id": "b", "_creationTime": 2.0, "i": 2, "o": {"k": []}, "u": "s", "n": "x", "opt": True},
    ]
    assert _check(docs)


def test_page_check_rejects_what_the_shape_does_not_describe() -> None:
    base = [
        {"_id": "a", "_creationTime": 1.0, "i": 1, "o": {"k": [1.5]}, "u": 1, "n": 1},
        {"_id": "b", "_creationTime": 1.0, "i": 1, "o": {"k": [1.5]}, "u": 1, "z": None},
    ]
    tree = TableShape.from_documents(base).type_tree("t")
    check = table_check(tree)
    ok = {"_id": "b", "_creationTime": 1.0, "i": 3, "o": {"k": [2.5, 3.5]}, "u": 2}
    assert check([ok], page_columns(tree, [ok]))
    for bad in (
        {**ok, "i": 1.0},  # Float64 in an Int64 column (Arrow would convert it silently)
        {**ok, "i": True},
        {**ok, "i": None},  # null where the field is never null
        {**ok, "n": None},  # null where the field is optional but never null
        {k: v for k, v in ok.items() if k != "i"},  # missing
        {**ok, "new": 1},  # a field the shape has not seen
        {**ok, "o": {"k": [1]}},  # nested item type
        {**ok, "o": {"k": [1.5], "extra": 1}},  # nested extra field
        {**ok, "u": "s"},  # a new union member
    ):
        assert not check([ok, bad], page_columns(tree, [ok, bad])), bad


def test_avro_record_patcher_writes_what_the_converter_writes() -> None:
    import io

    import fastavro

    from connectors.typemap.avro import avro_record_converter, avro_record_patcher, avro_schema

    docs = [
        {"_id": "a", "_creationTime": 1.5, "i": 1, "o": {"k": [1.5]}, "u": 1, "n": None},
        {"_id": "b", "_creationTime": 2.25, "i": 2, "o": {"k": []}, "u": "s", "opt": b"\x00"},
    ]
    tree = TableShape.from_documents(docs).type_tree("t")
    patch = avro_record_patcher(tree)
    assert patch is not None
    schema = fastavro.parse_schema(avro_schema(tree))
    a, b = io.BytesIO(), io.BytesIO()
    fastavro.writer(a, schema, [avro_record_converter(tree)(d) for d in docs], sync_marker=b"0" * 16)
    fastavro.writer(b, schema, [patch(d) for d in docs], sync_marker=b"0" * 16)
    assert a.getvalue() == b.getvalue()
    renamed = TableShape.from_documents([{"_id": "a", "_creationTime": 1.0, "a-b": 1}]).type_tree("t")
    assert avro_record_patcher(renamed) is None
