"""The ``source-convex`` process: the CDK's ``AirbyteEntrypoint`` (argument parsing, config validation
against the spec, secret filtering, check/discover, TRACE errors, exit codes) with one change on ``read``:
records and states reach stdout as the lines ``SourceConvex.read_rendered`` already rendered.

``AirbyteEntrypoint.run`` serializes every message it gets from ``read`` with the CDK serializer, which costs
more per record than the rest of the sync together and drops top-level nulls. So ``ConvexEntrypoint.read``
parks each rendered chunk and yields one marker message in its place; ``launch`` writes the parked chunk where
the marker's line comes out. Everything else (logs, stream statuses, traces, spec/check/discover) takes the
CDK's own path unchanged. Record counts for ``sourceStats`` are computed by the renderer per state.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Sequence
from typing import IO, Any, Final

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.models import AirbyteLogMessage, AirbyteMessage, ConnectorSpecification, Level, Type

from source_convex.source import SourceConvex

_MARKER_TEXT: Final = "source-convex: rendered records follow"
_MARKER: Final = AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=Level.DEBUG, message=_MARKER_TEXT))
MARKER_LINE: Final = AirbyteEntrypoint.airbyte_message_to_string(_MARKER)


class ConvexEntrypoint(AirbyteEntrypoint):
    source: SourceConvex

    def __init__(self, source: SourceConvex) -> None:
        super().__init__(source)
        self.parked: deque[bytearray] = deque()

    def read(
        self, source_spec: ConnectorSpecification, config: Any, catalog: Any, state: list[Any]
    ) -> Iterable[AirbyteMessage]:
        # What AirbyteEntrypoint.read does before reading, then the rendered path.
        self.set_up_secret_filter(config, source_spec.connectionSpecification)
        if self.source.check_config_against_spec:
            self.validate_connection(source_spec, config)
        for item in self.source.read_rendered(self.logger, config, catalog, state):
            if isinstance(item, AirbyteMessage):
                yield item
            else:
                self.parked.append(item)
                yield _MARKER
                self._memory_monitor.check_memory_usage()
        yield from self._emit_queued_messages(self.source)


def launch(argv: Sequence[str], out: IO[bytes] | None = None) -> None:
    """Run one command (``spec``, ``check``, ``discover``, ``read``) and write its messages to ``out``."""
    stream = out if out is not None else sys.stdout.buffer
    entrypoint = ConvexEntrypoint(SourceConvex())
    parsed = entrypoint.parse_args(list(argv))
    parked = entrypoint.parked
    write = stream.write
    try:
        for line in entrypoint.run(parsed):
            if line == MARKER_LINE and parked:
                write(parked.popleft())
            else:
                write(line.encode())
                write(b"\n")
                stream.flush()
    finally:
        stream.flush()
