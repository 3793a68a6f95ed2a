"""Active schema JSON and document validation: connectors/schema.py."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from connectors.errors import BadRequestError, SchemaValidationError
from connectors.schema import (
    AnyValidator,
    ArrayValidator,
    DatabaseSchema,
    FieldValidator,
    Float64Validator,
    IdValidator,
    IndexSchema,
    Int64Validator,
    LiteralValidator,
    NullValidator,
    ObjectValidator,
    RecordValidator,
    StringValidator,
    TableDefinition,
    UnionValidator,
    check_value,
    parse_database_schema,
    parse_table_definition,
    parse_validator,
    validate_document,
)

VALID_ID = "j57000820c20a1g7104gm2rc1m70ynr8"
SECRET = "SECRET-VALUE-123"

# streaming-import.md §11.2 example (the "tableDefinition" of the fivetran_create_table body).
PUBLIC_BOOKS: dict[str, Any] = {
    "tableName": "public_books",
    "indexes": [
        {"indexDescriptor": "_fivetran_by_primary_key", "fields": ["fivetran.deleted", "id"]},
        {"indexDescriptor": "_fivetran_by_synced", "fields": ["fivetran.deleted", "fivetran.synced"]},
    ],
    "stagedDbIndexes": [],
    "searchIndexes": [],
    "stagedSearchIndexes": [],
    "vectorIndexes": [],
    "stagedVectorIndexes": [],
    "documentType": {
        "type": "object",
        "value": {
            "id": {
                "fieldType": {"type": "union", "value": [{"type": "bigint"}, {"type": "null"}]},
                "optional": True,
            },
            "title": {
                "fieldType": {"type": "union", "value": [{"type": "string"}, {"type": "null"}]},
                "optional": True,
            },
            "fivetran": {
                "fieldType": {
                    "type": "object",
                    "value": {
                        "deleted": {"fieldType": {"type": "boolean"}, "optional": True},
                        "synced": {"fieldType": {"type": "number"}, "optional": True},
                        "columns": {"fieldType": {"type": "object", "value": {}}, "optional": False},
                    },
                },
                "optional": False,
            },
        },
    },
}


def _table(document_type: dict[str, Any] | None, name: str = "books") -> TableDefinition:
    return parse_table_definition({"tableName": name, "indexes": [], "documentType": document_type})


def _obj(**fields: Any) -> dict[str, Any]:
    """ValidatorJson object; a field value is a validator JSON (required) or ("opt", validator)."""
    value = {}
    for name, v in fields.items():
        if isinstance(v, tuple):
            value[name] = {"fieldType": v[1], "optional": True}
        else:
            value[name] = {"fieldType": v, "optional": False}
    return {"type": "object", "value": value}


def _error(table: TableDefinition, doc: dict[str, Any]) -> str:
    with pytest.raises(SchemaValidationError) as e:
        validate_document(table, doc)
    assert e.value.code == "SchemaValidationFailed"
    assert e.value.status == 400
    return e.value.message


def _invalid(obj: Any, parse: Any = parse_table_definition) -> str:
    with pytest.raises(BadRequestError) as e:
        parse(obj)
    assert e.value.code == "InvalidSchema"
    return e.value.message


# --- parse / serialize --------------------------------------------------------------------------------


def test_public_books_round_trip() -> None:
    table = parse_table_definition(PUBLIC_BOOKS)
    assert table.to_json() == PUBLIC_BOOKS
    assert table.indexes[0] == IndexSchema("_fivetran_by_primary_key", ("fivetran.deleted", "id"))
    doc_type = table.document_type
    assert isinstance(doc_type, ObjectValidator)
    assert doc_type.field_names() == ["fivetran", "id", "title"]
    assert doc_type.get("id") == FieldValidator(UnionValidator((Int64Validator(), NullValidator())), True)
    assert str(doc_type) == (
        "v.object({fivetran: v.object({columns: v.object({}), deleted: v.optional(v.boolean()), "
        "synced: v.optional(v.float64())}), id: v.optional(v.union(v.int64(), v.null())), "
        "title: v.optional(v.union(v.string(), v.null()))})"
    )
    # Parsing the output again gives an equal (and hashable) definition.
    assert parse_table_definition(table.to_json()) == table
    assert hash(parse_table_definition(table.to_json())) == hash(table)


def test_database_schema_round_trip_sorts_tables_and_fills_keys() -> None:
    minimal = {
        "tableName": "authors",
        "indexes": [{"indexDescriptor": "by_name", "fields": ["name", "_creationTime"]}],
    }
    schema = parse_database_schema({"tables": [PUBLIC_BOOKS, minimal], "schemaValidation": True})
    assert [t.table_name for t in schema.tables] == ["authors", "public_books"]
    out = schema.to_json()
    assert out == {
        "tables": [
            {
                "tableName": "authors",
                "indexes": [{"indexDescriptor": "by_name", "fields": ["name", "_creationTime"]}],
                "stagedDbIndexes": [],
                "searchIndexes": [],
                "stagedSearchIndexes": [],
                "vectorIndexes": [],
                "stagedVectorIndexes": [],
                "documentType": None,
            },
            PUBLIC_BOOKS,
        ],
        "schemaValidation": True,
    }
    assert parse_database_schema(out) == schema
    assert schema.table("authors") is not None and schema.table("nope") is None
    # Schemas written before schema validation existed have no flag: false (upstream default).
    assert parse_database_schema({"tables": []}).to_json() == {"tables": [], "schemaValidation": False}


def test_search_and_vector_indexes() -> None:
    table = parse_table_definition(
        {
            "tableName": "docs",
            "indexes": [],
            "searchIndexes": [
                {"indexDescriptor": "search_body", "searchField": "body", "filterFields": ["b", "a"]}
            ],
            "vectorIndexes": [
                {
                    "indexDescriptor": "by_embedding",
                    "vectorField": "embedding",
                    "dimension": 3,
                    "filterFields": [],
                }
            ],
        }
    )
    out = table.to_json()
    assert out["searchIndexes"] == [
        {"indexDescriptor": "search_body", "searchField": "body", "filterFields": ["a", "b"]}
    ]
    assert out["vectorIndexes"] == [
        {"indexDescriptor": "by_embedding", "vectorField": "embedding", "dimensions": 3, "filterFields": []}
    ]
    assert out["stagedSearchIndexes"] == [] and out["stagedVectorIndexes"] == []


def test_document_type_system_fields_are_filtered() -> None:
    doc_type = _obj(
        _id={"type": "id", "tableName": "books"}, _creationTime={"type": "number"}, title={"type": "string"}
    )
    table = _table(doc_type)
    assert table.to_json()["documentType"] == _obj(title={"type": "string"})
    union = {
        "type": "union",
        "value": [_obj(_id={"type": "string"}, a={"type": "null"}), _obj(b={"type": "null"})],
    }
    assert _table(union).to_json()["documentType"] == {
        "type": "union",
        "value": [_obj(a={"type": "null"}), _obj(b={"type": "null"})],
    }
    # A union of a single object is written back as that object (as upstream does).
    single = {"type": "union", "value": [_obj(a={"type": "null"})]}
    assert _table(single).to_json()["documentType"] == _obj(a={"type": "null"})
    assert _table({"type": "any"}).to_json()["documentType"] == {"type": "any"}


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [
        ({"tableName": "books"}, '"indexes" is required'),
        ({"tableName": "books", "indexes": {}}, '"indexes" must be a list'),
        ({"tableName": "bad name", "indexes": []}, "not a valid identifier"),
        ({"tableName": "_books", "indexes": []}, "reserved for system tables"),
        ({"tableName": "books", "indexes": [{"indexDescriptor": "by_x", "fields": []}]}, "non-empty"),
        (
            {"tableName": "books", "indexes": [{"indexDescriptor": "_by_x", "fields": ["x"]}]},
            "invalid index name",
        ),
        (
            {"tableName": "books", "indexes": [{"indexDescriptor": "by_x", "fields": ["x..y"]}]},
            "not a valid field path",
        ),
        (
            {
                "tableName": "books",
                "indexes": [{"indexDescriptor": "by_x", "fields": [f"f{i}" for i in range(17)]}],
            },
            "more than 16 fields",
        ),
        (
            {
                "tableName": "books",
                "indexes": [{"indexDescriptor": "by_x", "fields": ["x"]}],
                "stagedDbIndexes": [{"indexDescriptor": "by_x", "fields": ["y"]}],
            },
            "used twice",
        ),
        (
            {
                "tableName": "books",
                "indexes": [
                    {"indexDescriptor": "by_x", "fields": ["x"]},
                    {"indexDescriptor": "by_x2", "fields": ["x"]},
                ],
            },
            "the same fields",
        ),
        (
            {
                "tableName": "books",
                "indexes": [],
                "vectorIndexes": [
                    {"indexDescriptor": "v", "vectorField": "e", "dimensions": 1, "filterFields": []}
                ],
            },
            "dimensions",
        ),
        ({"tableName": "books", "indexes": [], "documentType": {"type": "string"}}, "documentType must be"),
        (
            {
                "tableName": "books",
                "indexes": [],
                "documentType": {"type": "union", "value": [{"type": "null"}]},
            },
            "documentType must be",
        ),
        (
            {"tableName": "books", "indexes": [], "documentType": _obj(a={"type": "numbr"})},
            'unknown validator type "numbr"',
        ),
        (
            {"tableName": "books", "indexes": [], "documentType": _obj(**{"a-b": {"type": "null"}})},
            "invalid field name",
        ),
    ],
)
def test_invalid_table_definitions(definition: dict[str, Any], fragment: str) -> None:
    message = _invalid(definition)
    assert fragment in message
    if isinstance(definition.get("tableName"), str):
        assert f'table "{definition["tableName"]}"' in message


def test_fivetran_reserved_index_names_are_accepted() -> None:
    table = parse_table_definition(
        {
            "tableName": "books",
            "indexes": [{"indexDescriptor": "_fivetran_by_synced", "fields": ["fivetran.synced"]}],
        }
    )
    assert table.index("_fivetran_by_synced") == IndexSchema("_fivetran_by_synced", ("fivetran.synced",))


def test_invalid_database_schemas() -> None:
    assert "tables" in _invalid({"schemaValidation": True}, parse_database_schema)
    assert "schemaValidation" in _invalid({"tables": [], "schemaValidation": "yes"}, parse_database_schema)
    dup = {"tableName": "books", "indexes": []}
    assert 'table "books"' in _invalid({"tables": [dup, dup]}, parse_database_schema)
    assert "too" not in _invalid({"tables": [{"tableName": "x y", "indexes": []}]}, parse_database_schema)


# --- every validator kind -----------------------------------------------------------------------------

INT42 = {"$integer": "KgAAAAAAAAA="}  # values-and-ids.md §2.3

KINDS: list[tuple[dict[str, Any], list[Any], list[Any]]] = [
    ({"type": "null"}, [None], [0, False, "", []]),
    ({"type": "number"}, [1.5, 0.0, -0.0, math.nan, math.inf], [1, True, "1.5", None]),
    ({"type": "bigint"}, [0, -(2**63), 2**63 - 1], [1.0, True, "1"]),
    ({"type": "boolean"}, [True, False], [1, 0, None, "true"]),
    ({"type": "string"}, ["", "x"], [b"x", 1, None]),
    ({"type": "bytes"}, [b"", b"\x00"], ["", [0]]),
    ({"type": "any"}, [None, 1, 1.0, "x", b"x", [1], {"a": {"b": []}}], []),
    ({"type": "literal", "value": "done"}, ["done"], ["todo", b"done", None]),
    ({"type": "literal", "value": 1.5}, [1.5], [1.0, "1.5"]),
    ({"type": "literal", "value": -0.0}, [-0.0], [0.0]),
    ({"type": "literal", "value": INT42}, [42], [42.0, 43, "42"]),
    ({"type": "literal", "value": True}, [True], [1, 1.0, False]),
    ({"type": "id", "tableName": "users"}, [VALID_ID], ["not-an-id", VALID_ID.upper(), 1, None]),
    ({"type": "array", "value": {"type": "bigint"}}, [[], [1, 2]], [[1, "x"], [1.0], {"0": 1}, (1,)]),
    (
        {
            "type": "record",
            "keys": {"type": "string"},
            "values": {"fieldType": {"type": "number"}, "optional": False},
        },
        [{}, {"a": 1.0, "b c": 2.0}],
        [{"a": "x"}, {"a": None}, [], None],
    ),
    (
        _obj(a={"type": "bigint"}, b=("opt", {"type": "string"})),
        [{"a": 1}, {"a": 1, "b": "x"}],
        [{}, {"b": "x"}, {"a": 1, "b": None}, {"a": 1, "c": 1}, []],
    ),
    (
        {"type": "union", "value": [{"type": "string"}, {"type": "null"}]},
        ["x", None],
        [1, 1.0, b"x", False],
    ),
    ({"type": "union", "value": []}, [], [None, 1]),
]


@pytest.mark.parametrize(("validator_json", "accepted", "rejected"), KINDS)
def test_validator_kinds(validator_json: dict[str, Any], accepted: list[Any], rejected: list[Any]) -> None:
    validator = parse_validator(validator_json)
    assert validator.to_json() == validator_json
    assert parse_validator(validator.to_json()) == validator
    for value in accepted:
        assert check_value(validator, value) is None, value
    for value in rejected:
        assert check_value(validator, value) is not None, value
    # The same validator as a document field.
    table = _table(_obj(f=validator_json))
    for value in accepted:
        validate_document(table, {"_id": VALID_ID, "_creationTime": 1.0, "f": value})
    for value in rejected:
        message = _error(table, {"_id": VALID_ID, "_creationTime": 1.0, "f": value})
        assert message.startswith('Document in table "books" does not match the schema: ')
        assert "field .f" in message


def test_validator_aliases_and_constructed_equality() -> None:
    assert parse_validator({"type": "map", "keys": {"type": "string"}}) == AnyValidator()
    assert parse_validator({"type": "set", "value": {"type": "string"}}).to_json() == {"type": "any"}
    assert parse_validator({"type": "literal", "value": 5}) == LiteralValidator(
        5.0
    )  # JSON numbers are Float64
    assert LiteralValidator(1.0) != LiteralValidator(True)
    assert LiteralValidator(0.0) != LiteralValidator(-0.0)
    assert LiteralValidator(42).to_json() == {"type": "literal", "value": INT42}
    constructed = ObjectValidator.of(
        {
            "tags": ArrayValidator(StringValidator()),
            "score": FieldValidator(Float64Validator(), optional=True),
            "owner": IdValidator("users"),
            "counts": RecordValidator(StringValidator(), FieldValidator(Int64Validator())),
        }
    )
    assert constructed.field_names() == ["counts", "owner", "score", "tags"]
    assert parse_validator(constructed.to_json()) == constructed
    assert str(constructed) == (
        'v.object({counts: v.record(v.string(), v.int64()), owner: v.id("users"), '
        "score: v.optional(v.float64()), tags: v.array(v.string())})"
    )


@pytest.mark.parametrize(
    ("validator_json", "fragment"),
    [
        ("string", "must be a JSON object"),
        ({}, 'string "type"'),
        ({"type": "literal"}, 'missing "value"'),
        ({"type": "literal", "value": None}, "a literal must be"),
        ({"type": "literal", "value": {"$integer": "AAA="}}, "eight bytes"),
        ({"type": "literal", "value": math.inf}, "finite"),
        ({"type": "id"}, "tableName"),
        ({"type": "array"}, 'missing "value"'),
        ({"type": "object", "value": []}, '"value" object'),
        ({"type": "object", "value": {"a": {"type": "null"}}}, "fieldType"),
        ({"type": "object", "value": {"a": {"fieldType": {"type": "null"}, "optional": "no"}}}, "optional"),
        ({"type": "union", "value": {}}, '"value" list'),
        (
            {
                "type": "record",
                "keys": {"type": "number"},
                "values": {"fieldType": {"type": "null"}, "optional": False},
            },
            "string or id keys",
        ),
        (
            {
                "type": "record",
                "keys": {"type": "literal", "value": "a"},
                "values": {"fieldType": {"type": "null"}, "optional": False},
            },
            "string or id keys",
        ),
        (
            {
                "type": "record",
                "keys": {"type": "string"},
                "values": {"fieldType": {"type": "null"}, "optional": True},
            },
            "optional values",
        ),
        ({"type": "record", "keys": {"type": "string"}}, '"keys" and "values"'),
    ],
)
def test_invalid_validators(validator_json: Any, fragment: str) -> None:
    message = _invalid(validator_json, parse_validator)
    assert fragment in message
    assert message.startswith("Invalid validator")


# --- document validation messages ------------------------------------------------------------------------


def test_message_format_from_the_brief() -> None:
    table = _table(_obj(year={"type": "bigint"}, title={"type": "string"}))
    assert _error(table, {"_id": VALID_ID, "_creationTime": 1.0, "year": 1999.0, "title": SECRET}) == (
        'Document in table "books" does not match the schema: field .year must be int64 (v.int64()), got float64.'
    )


def test_nested_paths_in_messages() -> None:
    doc_type = _obj(
        meta=_obj(
            authors={
                "type": "array",
                "value": _obj(name={"type": "string"}, born=("opt", {"type": "bigint"})),
            },
            scores={
                "type": "record",
                "keys": {"type": "string"},
                "values": {"fieldType": {"type": "number"}, "optional": False},
            },
        )
    )
    table = _table(doc_type)
    ok = {"meta": {"authors": [{"name": "a"}, {"name": "b", "born": 1}], "scores": {"x": 1.0}}}
    validate_document(table, ok)
    prefix = 'Document in table "books" does not match the schema: '
    bad = copy.deepcopy(ok)
    bad["meta"]["authors"][1]["born"] = SECRET
    assert _error(table, bad) == prefix + "field .meta.authors[1].born must be int64 (v.int64()), got string."
    bad = copy.deepcopy(ok)
    del bad["meta"]["authors"][0]["name"]
    assert (
        _error(table, bad)
        == prefix + "required field .meta.authors[0].name is missing (expected v.string())."
    )
    bad = copy.deepcopy(ok)
    bad["meta"]["authors"][0]["alias"] = SECRET
    assert _error(table, bad) == prefix + "field .meta.authors[0].alias is not in the schema (extra field)."
    bad = copy.deepcopy(ok)
    bad["meta"]["scores"][SECRET] = SECRET
    assert (
        _error(table, bad)
        == prefix + "field .meta.scores.values() must be float64 (v.float64()), got string."
    )
    bad = copy.deepcopy(ok)
    bad["meta"] = []
    assert _error(table, bad).startswith(prefix + "field .meta must be object (v.object({authors: ")


def test_missing_and_extra_top_level_fields() -> None:
    table = _table(_obj(a={"type": "string"}, b=("opt", {"type": "null"})))
    prefix = 'Document in table "books" does not match the schema: '
    assert _error(table, {"_id": VALID_ID, "_creationTime": 1.0}) == (
        prefix + "required field .a is missing (expected v.string())."
    )
    assert _error(table, {"a": "x", "c": 1}) == prefix + "field .c is not in the schema (extra field)."
    # Other system-looking fields are not ignored.
    assert _error(table, {"a": "x", "_ts": 1}) == prefix + "field ._ts is not in the schema (extra field)."
    validate_document(table, {"_id": VALID_ID, "_creationTime": 1.0, "a": "x"})
    validate_document(table, {"a": "x", "b": None})


def test_union_handling() -> None:
    prefix = 'Document in table "books" does not match the schema: '
    nullable_obj = {"type": "union", "value": [{"type": "null"}, _obj(x={"type": "bigint"})]}
    table = _table(_obj(u=nullable_obj))
    validate_document(table, {"u": None})
    validate_document(table, {"u": {"x": 1}})
    # Only one member has the value's type: its precise nested error is reported.
    assert _error(table, {"u": {"x": 1.0}}) == prefix + "field .u.x must be int64 (v.int64()), got float64."
    assert _error(table, {"u": 1}) == (
        prefix + "field .u must be null | object (v.union(v.null(), v.object({x: v.int64()}))), got int64."
    )
    literals = {
        "type": "union",
        "value": [{"type": "literal", "value": "a"}, {"type": "literal", "value": "b"}],
    }
    table = _table(_obj(s=literals))
    validate_document(table, {"s": "b"})
    assert _error(table, {"s": SECRET}) == (
        prefix + 'field .s must be "a" | "b" (v.union(v.literal("a"), v.literal("b"))), '
        "got a string that matches none of the union members."
    )
    one_literal = _table(_obj(s={"type": "literal", "value": "a"}))
    assert _error(one_literal, {"s": SECRET}) == (
        prefix + 'field .s must be "a" (v.literal("a")), got a different string.'
    )


def test_top_level_union_of_objects_and_any() -> None:
    union = {
        "type": "union",
        "value": [
            _obj(kind={"type": "literal", "value": "a"}, x={"type": "number"}),
            _obj(y={"type": "string"}),
        ],
    }
    table = _table(union)
    validate_document(table, {"_id": VALID_ID, "_creationTime": 1.0, "kind": "a", "x": 1.0})
    validate_document(table, {"_id": VALID_ID, "_creationTime": 1.0, "y": "s"})
    message = _error(table, {"_id": VALID_ID, "_creationTime": 1.0, "z": SECRET})
    assert message.startswith(
        'Document in table "books" does not match the schema: the document must be object (v.union('
    )
    assert message.endswith("got an object that matches none of the union members.")
    validate_document(_table({"type": "any"}), {"anything": [SECRET]})
    validate_document(_table(None), {"anything": [SECRET]})


def test_id_validator_in_documents() -> None:
    table = _table(_obj(author={"type": "id", "tableName": "users"}))
    validate_document(table, {"author": VALID_ID})
    assert _error(table, {"author": SECRET}) == (
        'Document in table "books" does not match the schema: field .author must be an id of table "users" '
        '(v.id("users")), got a string that is not a valid document ID.'
    )


def test_messages_never_contain_values() -> None:
    table = parse_table_definition(PUBLIC_BOOKS)
    docs: list[dict[str, Any]] = [
        {"id": SECRET, "fivetran": {"columns": {}}},
        {"title": 7, "fivetran": {"columns": {"k": SECRET}}},
        {SECRET: 1, "fivetran": {"columns": {}}},
        {"fivetran": {"columns": {}, "synced": SECRET}},
        {"fivetran": SECRET},
    ]
    for doc in docs:
        message = _error(table, doc)
        assert message.startswith('Document in table "public_books" does not match the schema: ')
        # The key SECRET is a field name (names are allowed); values never appear.
        if SECRET not in doc:
            assert SECRET not in message


def test_constructed_table_definition_defaults() -> None:
    table = TableDefinition("books", document_type=ObjectValidator.of({"a": StringValidator()}))
    assert table.to_json()["indexes"] == [] and table.to_json()["documentType"] == _obj(a={"type": "string"})
    schema = DatabaseSchema((table,), schema_validation=True)
    assert parse_database_schema(schema.to_json()) == schema


def test_id_fallback_check_when_ids_module_is_missing() -> None:
    from connectors.schema import _id_shape_ok

    assert _id_shape_ok(VALID_ID)
    assert _id_shape_ok("0400000000000000000000000000248")  # 31 characters
    assert not _id_shape_ok(VALID_ID.upper())
    assert not _id_shape_ok("x" * 33)
    assert not _id_shape_ok("not-an-id")
