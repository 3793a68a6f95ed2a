"""Child process of the crash-safe timestamp test: commits, then hands out read timestamps, until killed.

Usage: ``python timestamp_child.py sqlite <data_dir>`` or ``python timestamp_child.py postgres <schema> <url>``.
Prints every timestamp a client could have seen (commit timestamps and read timestamps), flushed, one a line.
"""

from __future__ import annotations

import sys
import time

from connectors.backend.engine import Deployment, DeploymentConfig


def main() -> None:
    kind, location = sys.argv[1], sys.argv[2]
    config = DeploymentConfig(background=False)
    if kind == "sqlite":
        dep = Deployment.open(data_dir=location, config=config)
    else:
        dep = Deployment.open(db_url=sys.argv[3], pg_schema=location, config=config)
    with dep.transaction() as tx:
        tx.create_table("items", exist_ok=True)
    i = 0
    while True:
        if i % 10 == 0:
            with dep.transaction() as tx:
                tx.insert("items", {"i": i})
            sys.stdout.write(f"{dep.last_commit_ts}\n")
        # Read timestamps after the last commit: only the oracle's lease covers them after a crash.
        sys.stdout.write(f"{dep.read_timestamp()}\n")
        sys.stdout.flush()
        i += 1
        time.sleep(0.01)


if __name__ == "__main__":
    main()
