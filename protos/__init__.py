"""Generated protobuf/gRPC code of the Fivetran SDK (shipped in the wheel)."""
