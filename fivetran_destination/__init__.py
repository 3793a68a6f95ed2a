"""The Fivetran Partner SDK v2 destination connector (``../shared/spec/fivetran-destination.md``).

``service`` is the gRPC servicer; ``batch_files`` reads the batch files of WriteBatch/WriteHistoryBatch
requests; ``writer`` posts their rows; ``harness`` replays Fivetran's destination-tester inputs.
"""
