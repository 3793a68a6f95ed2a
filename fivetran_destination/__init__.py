"""The Fivetran Partner SDK v2 destination connector (``../shared/spec/fivetran-destination.md``).

``batch_files`` reads the batch files of WriteBatch/WriteHistoryBatch requests.
"""
