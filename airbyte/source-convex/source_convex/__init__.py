"""Airbyte ``source-convex`` on airbyte-cdk 7, a thin adapter over ``connectors.sync`` (``shared/spec/airbyte.md``).

``SourceConvex`` is the CDK ``Source``; ``run.run`` is the ``source-convex`` console script, which runs it through
the CDK's ``AirbyteEntrypoint`` with records and states rendered by ``records`` (see ``entrypoint``).
"""

__version__ = "1.0.0"

from source_convex.source import SourceConvex  # noqa: E402

__all__ = ["SourceConvex", "__version__"]
