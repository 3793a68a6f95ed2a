"""The ``source-convex`` console script."""

from __future__ import annotations

import sys

from source_convex.entrypoint import launch


def run() -> None:
    launch(sys.argv[1:])


if __name__ == "__main__":
    run()
