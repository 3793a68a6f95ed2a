"""Fivetran Partner SDK v2 protos (package ``fivetran_sdk.v2``) and the Python code generated from them.

``from protos import common_pb2, connector_sdk_pb2, connector_sdk_pb2_grpc, destination_sdk_pb2,
destination_sdk_pb2_grpc``. Regenerate with ``python -m protos.generate`` after editing a ``.proto``.
"""
