"""Airbyte's conventional entry point (``python main.py <command> ...``), the same as ``source-convex``."""

from source_convex.run import run

if __name__ == "__main__":
    run()
