"""Console script ``destination-convex``: ``spec``, ``check --config``, ``write --config --catalog``."""

from __future__ import annotations

import sys

from destination_convex.destination import DestinationConvex


def run() -> None:
    DestinationConvex().run(sys.argv[1:])


if __name__ == "__main__":
    run()
