"""The Fivetran SDK protos: generated code is current, and every message, field, enum value and rpc matches
the contract tables of shared/spec/fivetran-sdk.md §2-§4 (transcribed below, independently of the .proto
files, so a typo in a .proto fails here)."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from protos import common_pb2, connector_sdk_pb2, destination_sdk_pb2  # noqa: F401  (register descriptors)

PACKAGE = "fivetran_sdk.v2"

# fivetran-sdk.md §2.2, §3.2, §4.3: message -> [(number, name, type, label)]; label is "" (singular),
# "rep", "opt" (proto3 optional), "map" or "oneof <name>".
MESSAGES: dict[str, list[tuple[int, str, str, str]]] = {
    "ConfigurationFormRequest": [],
    "ConfigurationFormResponse": [
        (1, "schema_selection_supported", "bool", ""),
        (2, "table_selection_supported", "bool", ""),
        (3, "fields", "FormField", "rep"),
        (4, "tests", "ConfigurationTest", "rep"),
    ],
    "FormField": [
        (1, "name", "string", ""),
        (2, "label", "string", ""),
        (3, "required", "bool", "opt"),
        (4, "description", "string", "opt"),
        (5, "text_field", "TextField", "oneof type"),
        (6, "dropdown_field", "DropdownField", "oneof type"),
        (7, "toggle_field", "ToggleField", "oneof type"),
        (10, "conditional_fields", "ConditionalFields", "oneof type"),
        (11, "upload_field", "UploadField", "oneof type"),
        (12, "descriptive_dropdown_fields", "DescriptiveDropDownFields", "oneof type"),
        (8, "default_value", "string", "opt"),
        (9, "placeholder", "string", "opt"),
    ],
    "UploadField": [
        (1, "allowed_file_type", "string", "rep"),
        (2, "max_file_size_bytes", "int32", ""),
    ],
    "DescriptiveDropDownFields": [
        (1, "descriptive_dropdown_field", "DescriptiveDropDownField", "rep"),
    ],
    "DescriptiveDropDownField": [
        (1, "value", "string", ""),
        (2, "label", "string", ""),
        (3, "description", "string", ""),
    ],
    "ConditionalFields": [
        (1, "condition", "VisibilityCondition", ""),
        (2, "fields", "FormField", "rep"),
    ],
    "VisibilityCondition": [
        (1, "condition_field", "string", ""),
        (2, "bool_value", "bool", "oneof visible_when"),
        (3, "string_value", "string", "oneof visible_when"),
        (4, "empty_value", "bool", "oneof visible_when"),
    ],
    "DropdownField": [
        (1, "dropdown_field", "string", "rep"),
    ],
    "ToggleField": [],
    "ConfigurationTest": [
        (1, "name", "string", ""),
        (2, "label", "string", ""),
    ],
    "TestRequest": [
        (1, "name", "string", ""),
        (2, "configuration", "map<string, string>", "map"),
    ],
    "TestResponse": [
        (1, "success", "bool", "oneof response"),
        (2, "failure", "string", "oneof response"),
    ],
    "SchemaList": [
        (1, "schemas", "Schema", "rep"),
    ],
    "TableList": [
        (1, "tables", "Table", "rep"),
    ],
    "Schema": [
        (1, "name", "string", ""),
        (2, "tables", "Table", "rep"),
    ],
    "DataTypeParams": [
        (1, "decimal", "DecimalParams", "oneof params"),
        (2, "string_byte_length", "int32", "oneof params"),
    ],
    "DecimalParams": [
        (1, "precision", "uint32", ""),
        (2, "scale", "uint32", ""),
    ],
    "ValueType": [
        (1, "null", "bool", "oneof inner"),
        (2, "bool", "bool", "oneof inner"),
        (3, "short", "int32", "oneof inner"),
        (4, "int", "int32", "oneof inner"),
        (5, "long", "int64", "oneof inner"),
        (6, "float", "float", "oneof inner"),
        (7, "double", "double", "oneof inner"),
        (8, "naive_date", "google.protobuf.Timestamp", "oneof inner"),
        (9, "naive_datetime", "google.protobuf.Timestamp", "oneof inner"),
        (10, "utc_datetime", "google.protobuf.Timestamp", "oneof inner"),
        (11, "decimal", "string", "oneof inner"),
        (12, "binary", "bytes", "oneof inner"),
        (13, "string", "string", "oneof inner"),
        (14, "json", "string", "oneof inner"),
        (15, "xml", "string", "oneof inner"),
        (16, "naive_time", "google.protobuf.Timestamp", "oneof inner"),
    ],
    "Table": [
        (1, "name", "string", ""),
        (2, "columns", "Column", "rep"),
    ],
    "Column": [
        (1, "name", "string", ""),
        (2, "type", "DataType", ""),
        (3, "primary_key", "bool", ""),
        (4, "params", "DataTypeParams", "opt"),
    ],
    "Warning": [
        (1, "message", "string", ""),
    ],
    "Task": [
        (1, "message", "string", ""),
    ],
    "SchemaRequest": [
        (1, "configuration", "map<string, string>", "map"),
    ],
    "SchemaResponse": [
        (1, "schema_response_not_supported", "bool", "oneof response"),
        (2, "with_schema", "SchemaList", "oneof response"),
        (3, "without_schema", "TableList", "oneof response"),
        (4, "selection_not_supported", "bool", "opt"),
    ],
    "UpdateRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "selection", "Selection", "opt"),
        (3, "state_json", "string", "opt"),
    ],
    "Selection": [
        (1, "without_schema", "TablesWithNoSchema", "oneof selection"),
        (2, "with_schema", "TablesWithSchema", "oneof selection"),
    ],
    "TablesWithNoSchema": [
        (1, "tables", "TableSelection", "rep"),
        (2, "include_new_tables", "bool", ""),
    ],
    "TablesWithSchema": [
        (1, "schemas", "SchemaSelection", "rep"),
        (2, "include_new_schemas", "bool", ""),
    ],
    "SchemaSelection": [
        (1, "included", "bool", ""),
        (2, "schema_name", "string", ""),
        (3, "tables", "TableSelection", "rep"),
        (4, "include_new_tables", "bool", ""),
    ],
    "TableSelection": [
        (1, "included", "bool", ""),
        (2, "table_name", "string", ""),
        (3, "columns", "map<string, bool>", "map"),
        (4, "include_new_columns", "bool", ""),
    ],
    "UpdateResponse": [
        (1, "record", "Record", "oneof operation"),
        (2, "schema_change", "SchemaChange", "oneof operation"),
        (3, "checkpoint", "Checkpoint", "oneof operation"),
        (4, "warning", "Warning", "oneof operation"),
        (5, "task", "Task", "oneof operation"),
        (6, "records", "Records", "oneof operation"),
    ],
    "SchemaChange": [
        (1, "with_schema", "SchemaList", "oneof change"),
        (2, "without_schema", "TableList", "oneof change"),
    ],
    "Records": [
        (1, "records", "Record", "rep"),
    ],
    "Record": [
        (1, "schema_name", "string", "opt"),
        (2, "table_name", "string", ""),
        (3, "type", "RecordType", ""),
        (4, "data", "map<string, ValueType>", "map"),
    ],
    "Checkpoint": [
        (1, "state_json", "string", ""),
    ],
    "CapabilitiesRequest": [],
    "CapabilitiesResponse": [
        (1, "batch_file_format", "BatchFileFormat", ""),
    ],
    "DescribeTableRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "schema_name", "string", ""),
        (3, "table_name", "string", ""),
    ],
    "DescribeTableResponse": [
        (1, "not_found", "bool", "oneof response"),
        (2, "table", "Table", "oneof response"),
        (3, "warning", "Warning", "oneof response"),
        (4, "task", "Task", "oneof response"),
    ],
    "CreateTableRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "schema_name", "string", ""),
        (3, "table", "Table", ""),
    ],
    "CreateTableResponse": [
        (1, "success", "bool", "oneof response"),
        (2, "warning", "Warning", "oneof response"),
        (3, "task", "Task", "oneof response"),
    ],
    "AlterTableRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "schema_name", "string", ""),
        (3, "table", "Table", ""),
        (4, "drop_columns", "bool", ""),
    ],
    "AlterTableResponse": [
        (1, "success", "bool", "oneof response"),
        (2, "warning", "Warning", "oneof response"),
        (3, "task", "Task", "oneof response"),
    ],
    "TruncateRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "schema_name", "string", ""),
        (3, "table_name", "string", ""),
        (4, "synced_column", "string", ""),
        (5, "utc_delete_before", "google.protobuf.Timestamp", ""),
        (6, "soft", "SoftTruncate", "opt"),
    ],
    "SoftTruncate": [
        (1, "deleted_column", "string", ""),
    ],
    "TruncateResponse": [
        (1, "success", "bool", "oneof response"),
        (2, "warning", "Warning", "oneof response"),
        (3, "task", "Task", "oneof response"),
    ],
    "WriteBatchRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "schema_name", "string", ""),
        (3, "table", "Table", ""),
        (4, "keys", "map<string, bytes>", "map"),
        (5, "replace_files", "string", "rep"),
        (6, "update_files", "string", "rep"),
        (7, "delete_files", "string", "rep"),
        (8, "file_params", "FileParams", ""),
    ],
    "WriteHistoryBatchRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "schema_name", "string", ""),
        (3, "table", "Table", ""),
        (4, "keys", "map<string, bytes>", "map"),
        (5, "earliest_start_files", "string", "rep"),
        (6, "replace_files", "string", "rep"),
        (7, "update_files", "string", "rep"),
        (8, "delete_files", "string", "rep"),
        (9, "file_params", "FileParams", ""),
    ],
    "FileParams": [
        (1, "compression", "Compression", ""),
        (2, "encryption", "Encryption", ""),
        (3, "null_string", "string", ""),
        (4, "unmodified_string", "string", ""),
    ],
    "WriteBatchResponse": [
        (1, "success", "bool", "oneof response"),
        (2, "warning", "Warning", "oneof response"),
        (3, "task", "Task", "oneof response"),
    ],
    "MigrateRequest": [
        (1, "configuration", "map<string, string>", "map"),
        (2, "details", "MigrationDetails", ""),
    ],
    "MigrateResponse": [
        (1, "success", "bool", "oneof response"),
        (2, "unsupported", "bool", "oneof response"),
        (3, "warning", "Warning", "oneof response"),
        (4, "task", "Task", "oneof response"),
    ],
    "MigrationDetails": [
        (1, "schema", "string", ""),
        (2, "table", "string", ""),
        (3, "drop", "DropOperation", "oneof operation"),
        (4, "copy", "CopyOperation", "oneof operation"),
        (5, "rename", "RenameOperation", "oneof operation"),
        (6, "add", "AddOperation", "oneof operation"),
        (7, "update_column_value", "UpdateColumnValueOperation", "oneof operation"),
        (8, "table_sync_mode_migration", "TableSyncModeMigrationOperation", "oneof operation"),
    ],
    "DropOperation": [
        (1, "drop_table", "bool", "oneof entity"),
        (2, "drop_column_in_history_mode", "DropColumnInHistoryMode", "oneof entity"),
    ],
    "DropColumnInHistoryMode": [
        (1, "column", "string", ""),
        (2, "operation_timestamp", "string", ""),
    ],
    "CopyOperation": [
        (1, "copy_table", "CopyTable", "oneof entity"),
        (2, "copy_column", "CopyColumn", "oneof entity"),
        (3, "copy_table_to_history_mode", "CopyTableToHistoryMode", "oneof entity"),
    ],
    "CopyTable": [
        (1, "from_table", "string", ""),
        (2, "to_table", "string", ""),
    ],
    "CopyColumn": [
        (1, "from_column", "string", ""),
        (2, "to_column", "string", ""),
    ],
    "CopyTableToHistoryMode": [
        (1, "from_table", "string", ""),
        (2, "to_table", "string", ""),
        (3, "soft_deleted_column", "string", ""),
    ],
    "RenameOperation": [
        (1, "rename_table", "RenameTable", "oneof entity"),
        (2, "rename_column", "RenameColumn", "oneof entity"),
    ],
    "RenameTable": [
        (1, "from_table", "string", ""),
        (2, "to_table", "string", ""),
    ],
    "RenameColumn": [
        (1, "from_column", "string", ""),
        (2, "to_column", "string", ""),
    ],
    "AddOperation": [
        (1, "add_column_in_history_mode", "AddColumnInHistoryMode", "oneof entity"),
        (2, "add_column_with_default_value", "AddColumnWithDefaultValue", "oneof entity"),
    ],
    "AddColumnWithDefaultValue": [
        (1, "column", "string", ""),
        (2, "column_type", "DataType", ""),
        (3, "default_value", "string", ""),
    ],
    "AddColumnInHistoryMode": [
        (1, "column", "string", ""),
        (2, "column_type", "DataType", ""),
        (3, "default_value", "string", ""),
        (4, "operation_timestamp", "string", ""),
    ],
    "UpdateColumnValueOperation": [
        (1, "column", "string", ""),
        (2, "value", "string", ""),
    ],
    "TableSyncModeMigrationOperation": [
        (1, "type", "TableSyncModeMigrationType", ""),
        (2, "soft_deleted_column", "string", "opt"),
        (3, "keep_deleted_rows", "bool", "opt"),
    ],
}
ENUMS: dict[str, list[tuple[str, int]]] = {
    "TextField": [("PlainText", 0), ("Password", 1), ("Hidden", 2)],
    "DataType": [
        ("UNSPECIFIED", 0),
        ("BOOLEAN", 1),
        ("SHORT", 2),
        ("INT", 3),
        ("LONG", 4),
        ("DECIMAL", 5),
        ("FLOAT", 6),
        ("DOUBLE", 7),
        ("NAIVE_DATE", 8),
        ("NAIVE_DATETIME", 9),
        ("UTC_DATETIME", 10),
        ("BINARY", 11),
        ("XML", 12),
        ("STRING", 13),
        ("JSON", 14),
        ("NAIVE_TIME", 15),
    ],
    "RecordType": [("UPSERT", 0), ("UPDATE", 1), ("DELETE", 2), ("TRUNCATE", 3)],
    "Encryption": [("NONE", 0), ("AES", 1)],
    "BatchFileFormat": [("CSV", 0), ("PARQUET", 1)],
    "Compression": [("OFF", 0), ("ZSTD", 1), ("GZIP", 2)],
    "TableSyncModeMigrationType": [
        ("SOFT_DELETE_TO_LIVE", 0),
        ("SOFT_DELETE_TO_HISTORY", 1),
        ("HISTORY_TO_SOFT_DELETE", 2),
        ("HISTORY_TO_LIVE", 3),
        ("LIVE_TO_SOFT_DELETE", 4),
        ("LIVE_TO_HISTORY", 5),
    ],
}
FILES: dict[str, str] = {
    "TextField": "common.proto",
    "DataType": "common.proto",
    "RecordType": "common.proto",
    "ConfigurationFormRequest": "common.proto",
    "ConfigurationFormResponse": "common.proto",
    "FormField": "common.proto",
    "UploadField": "common.proto",
    "DescriptiveDropDownFields": "common.proto",
    "DescriptiveDropDownField": "common.proto",
    "ConditionalFields": "common.proto",
    "VisibilityCondition": "common.proto",
    "DropdownField": "common.proto",
    "ToggleField": "common.proto",
    "ConfigurationTest": "common.proto",
    "TestRequest": "common.proto",
    "TestResponse": "common.proto",
    "SchemaList": "common.proto",
    "TableList": "common.proto",
    "Schema": "common.proto",
    "DataTypeParams": "common.proto",
    "DecimalParams": "common.proto",
    "ValueType": "common.proto",
    "Table": "common.proto",
    "Column": "common.proto",
    "Warning": "common.proto",
    "Task": "common.proto",
    "SchemaRequest": "connector_sdk.proto",
    "SchemaResponse": "connector_sdk.proto",
    "UpdateRequest": "connector_sdk.proto",
    "Selection": "connector_sdk.proto",
    "TablesWithNoSchema": "connector_sdk.proto",
    "TablesWithSchema": "connector_sdk.proto",
    "SchemaSelection": "connector_sdk.proto",
    "TableSelection": "connector_sdk.proto",
    "UpdateResponse": "connector_sdk.proto",
    "SchemaChange": "connector_sdk.proto",
    "Records": "connector_sdk.proto",
    "Record": "connector_sdk.proto",
    "Checkpoint": "connector_sdk.proto",
    "Encryption": "destination_sdk.proto",
    "BatchFileFormat": "destination_sdk.proto",
    "Compression": "destination_sdk.proto",
    "TableSyncModeMigrationType": "destination_sdk.proto",
    "CapabilitiesRequest": "destination_sdk.proto",
    "CapabilitiesResponse": "destination_sdk.proto",
    "DescribeTableRequest": "destination_sdk.proto",
    "DescribeTableResponse": "destination_sdk.proto",
    "CreateTableRequest": "destination_sdk.proto",
    "CreateTableResponse": "destination_sdk.proto",
    "AlterTableRequest": "destination_sdk.proto",
    "AlterTableResponse": "destination_sdk.proto",
    "TruncateRequest": "destination_sdk.proto",
    "SoftTruncate": "destination_sdk.proto",
    "TruncateResponse": "destination_sdk.proto",
    "WriteBatchRequest": "destination_sdk.proto",
    "WriteHistoryBatchRequest": "destination_sdk.proto",
    "FileParams": "destination_sdk.proto",
    "WriteBatchResponse": "destination_sdk.proto",
    "MigrateRequest": "destination_sdk.proto",
    "MigrateResponse": "destination_sdk.proto",
    "MigrationDetails": "destination_sdk.proto",
    "DropOperation": "destination_sdk.proto",
    "DropColumnInHistoryMode": "destination_sdk.proto",
    "CopyOperation": "destination_sdk.proto",
    "CopyTable": "destination_sdk.proto",
    "CopyColumn": "destination_sdk.proto",
    "CopyTableToHistoryMode": "destination_sdk.proto",
    "RenameOperation": "destination_sdk.proto",
    "RenameTable": "destination_sdk.proto",
    "RenameColumn": "destination_sdk.proto",
    "AddOperation": "destination_sdk.proto",
    "AddColumnWithDefaultValue": "destination_sdk.proto",
    "AddColumnInHistoryMode": "destination_sdk.proto",
    "UpdateColumnValueOperation": "destination_sdk.proto",
    "TableSyncModeMigrationOperation": "destination_sdk.proto",
}

# fivetran-sdk.md §3.1, §4.1: service -> [(rpc, request, response, server streaming)].
SERVICES: dict[str, list[tuple[str, str, str, bool]]] = {
    "SourceConnector": [
        ("ConfigurationForm", "ConfigurationFormRequest", "ConfigurationFormResponse", False),
        ("Test", "TestRequest", "TestResponse", False),
        ("Schema", "SchemaRequest", "SchemaResponse", False),
        ("Update", "UpdateRequest", "UpdateResponse", True),
    ],
    "DestinationConnector": [
        ("ConfigurationForm", "ConfigurationFormRequest", "ConfigurationFormResponse", False),
        ("Capabilities", "CapabilitiesRequest", "CapabilitiesResponse", False),
        ("Test", "TestRequest", "TestResponse", False),
        ("DescribeTable", "DescribeTableRequest", "DescribeTableResponse", False),
        ("CreateTable", "CreateTableRequest", "CreateTableResponse", False),
        ("AlterTable", "AlterTableRequest", "AlterTableResponse", False),
        ("Truncate", "TruncateRequest", "TruncateResponse", False),
        ("WriteBatch", "WriteBatchRequest", "WriteBatchResponse", False),
        ("WriteHistoryBatch", "WriteHistoryBatchRequest", "WriteBatchResponse", False),
        ("Migrate", "MigrateRequest", "MigrateResponse", False),
    ],
}
SERVICE_FILES = {"SourceConnector": "connector_sdk.proto", "DestinationConnector": "destination_sdk.proto"}

_SCALARS = {
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_DOUBLE: "double",
}

POOL = descriptor_pool.Default()


def _type_name(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message = field.message_type
        if message.GetOptions().map_entry:
            key, value = message.fields_by_name["key"], message.fields_by_name["value"]
            return f"map<{_type_name(key)}, {_type_name(value)}>"
        full = message.full_name
        return full.removeprefix(PACKAGE + ".") if full.startswith(PACKAGE + ".") else full
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.full_name.removeprefix(PACKAGE + ".")
    return _SCALARS[field.type]


def _label(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        return "map"
    if field.is_repeated:
        return "rep"
    oneof = field.containing_oneof
    if oneof is not None:
        # proto3 `optional` is a synthetic one-field oneof named "_<field>".
        return "opt" if field.has_presence and oneof.name == f"_{field.name}" else f"oneof {oneof.name}"
    return ""


def _message(name: str) -> Descriptor:
    return POOL.FindMessageTypeByName(f"{PACKAGE}.{name}")


def _enum(name: str) -> EnumDescriptor:
    return POOL.FindEnumTypeByName(f"{PACKAGE}.{name}")


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_fields_match_the_spec(name: str) -> None:
    message = _message(name)
    actual = sorted((f.number, f.name, _type_name(f), _label(f)) for f in message.fields)
    assert actual == sorted(MESSAGES[name])
    assert message.file.name == FILES[name]
    assert message.file.package == PACKAGE


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_values_match_the_spec(name: str) -> None:
    enum = _enum(name)
    assert [(v.name, v.number) for v in enum.values] == ENUMS[name]
    assert enum.file.name == FILES[name]


def test_no_messages_or_enums_beyond_the_spec() -> None:
    for module in (common_pb2, connector_sdk_pb2, destination_sdk_pb2):
        file = module.DESCRIPTOR
        assert set(file.message_types_by_name) <= set(MESSAGES), file.name
        assert set(file.enum_types_by_name) <= set(ENUMS), file.name
    defined = {
        name
        for module in (common_pb2, connector_sdk_pb2, destination_sdk_pb2)
        for name in (*module.DESCRIPTOR.message_types_by_name, *module.DESCRIPTOR.enum_types_by_name)
    }
    assert defined == set(MESSAGES) | set(ENUMS)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_methods_match_the_spec(service: str) -> None:
    descriptor = POOL.FindServiceByName(f"{PACKAGE}.{service}")
    assert descriptor.file.name == SERVICE_FILES[service]
    actual = [
        (
            m.name,
            m.input_type.full_name.removeprefix(PACKAGE + "."),
            m.output_type.full_name.removeprefix(PACKAGE + "."),
            m.server_streaming,
        )
        for m in descriptor.methods
    ]
    assert actual == SERVICES[service]
    assert not any(m.client_streaming for m in descriptor.methods)


def test_file_options_and_imports() -> None:
    """fivetran-sdk.md §1.1: proto3, the three options, bare-name imports (upstream file names)."""
    deps = {
        "common.proto": {"google/protobuf/timestamp.proto"},
        "connector_sdk.proto": {"common.proto"},
        "destination_sdk.proto": {"google/protobuf/timestamp.proto", "common.proto"},
    }
    for module in (common_pb2, connector_sdk_pb2, destination_sdk_pb2):
        file = module.DESCRIPTOR
        options = file.GetOptions()
        assert options.optimize_for == options.SPEED
        assert options.java_multiple_files is True
        assert options.go_package == "fivetran.com/fivetran_sdk_v2"
        assert {d.name for d in file.dependencies} == deps[file.name]


def test_method_paths() -> None:
    """The HTTP/2 paths of fivetran-sdk.md §1.2 are what the generated stubs call."""
    from protos import connector_sdk_pb2_grpc, destination_sdk_pb2_grpc

    assert connector_sdk_pb2_grpc.SourceConnector.Update.__name__ == "Update"
    paths = [f"/{PACKAGE}.{service}/{rpc}" for service, rpcs in SERVICES.items() for rpc, _, _, _ in rpcs]
    source = (
        Path(connector_sdk_pb2_grpc.__file__).read_text()
        + Path(destination_sdk_pb2_grpc.__file__).read_text()
    )
    for path in paths:
        assert f"'{path}'" in source, path


def test_optional_fields_track_presence() -> None:
    """A set-to-default optional field is still present (fivetran-sdk.md §1.1), e.g. an empty state_json."""
    request = connector_sdk_pb2.UpdateRequest()
    assert not request.HasField("state_json")
    request.state_json = ""
    assert request.HasField("state_json")
    wire = connector_sdk_pb2.UpdateRequest.FromString(request.SerializeToString())
    assert wire.HasField("state_json")


def test_generated_code_is_current(tmp_path: Path) -> None:
    """Regenerating from the .proto files gives the committed files byte for byte (run
    `python -m protos.generate` after editing a .proto or upgrading grpcio-tools)."""
    from protos import generate

    generate.generate(tmp_path)
    committed = Path(generate.__file__).parent
    names = generate.generated_file_names()
    match, mismatch, errors = filecmp.cmpfiles(committed, tmp_path, names, shallow=False)
    assert (mismatch, errors) == ([], []), "stale generated code: run `python -m protos.generate`"
    assert sorted(match) == sorted(names)
    on_disk = {p.name for p in committed.glob("*_pb2*.py*")}
    assert on_disk == set(names), "generated files without a .proto (or missing ones)"
