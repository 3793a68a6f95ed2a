"""Child process of the crash-recovery test: commits batches of documents until it is killed.

Usage: ``python crash_child.py sqlite <data_dir>`` or ``python crash_child.py postgres <schema> <url>``.
Prints the number of committed batches after each commit (flushed), so the parent knows what is durable.
"""

from __future__ import annotations

import sys

from connectors.backend.engine import Deployment, DeploymentConfig

BATCH = 50


def main() -> None:
    kind, location = sys.argv[1], sys.argv[2]
    config = DeploymentConfig(background=False)
    if kind == "sqlite":
        dep = Deployment.open(data_dir=location, config=config)
    else:
        dep = Deployment.open(db_url=sys.argv[3], pg_schema=location, config=config)
    with dep.transaction() as tx:
        tx.create_table("items", exist_ok=True)
        tx.add_index("items", "by_batch", ["batch", "i"])
    batch = dep.document_count("items") // BATCH  # continue after an earlier run
    while True:
        with dep.transaction() as tx:
            for i in range(BATCH):
                tx.insert("items", {"batch": batch, "i": i, "pad": "x" * (i * 7), "even": i % 2 == 0})
            # Rewrite one document of the batch, and patch one of an older batch.
            first = tx.index_query("items", "by_batch", [batch, 0])[0][0]
            tx.patch(first, {"patched": True})
            if batch:
                older = tx.index_query("items", "by_batch", [batch - 1, 1])[0][0]
                tx.patch(older, {"touched_by": batch})
        batch += 1
        sys.stdout.write(f"{batch}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
