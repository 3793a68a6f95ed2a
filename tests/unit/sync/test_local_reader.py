"""``LocalReader`` decodes the engine's stored rows directly; its pages must be exactly the server's pages
(``list_snapshot`` bytes decoded as a client decodes them), special values, nesting and column filters
included."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from connectors.backend import export
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.selection import ComponentSelection, Selection, TableSelection
from connectors.sync import LocalReader
from connectors.sync.readers import decode_exported_values
from connectors.values import ValueFormat

DOCS: list[dict[str, Any]] = [
    {
        "i": 2**63 - 1,
        "neg": -(2**63),
        "nan": math.nan,
        "inf": -math.inf,
        "zero": -0.0,
        "f": 1.0,
        "b": b"\x00\xff",
        "s": "é",
        "n": None,
        "ok": True,
        "plain": ["a", 1.5, None, False],
        "mixed": [1, {"x": b"y"}, [math.inf, 2**40]],
        "o": {"k": -3, "deep": {"z": [b"", -0.0]}},
    },
    {"s": "plain document", "f": 2.5},
    {},
]


def _server_pages(dep: Deployment, selection: Selection, snapshot: int, limit: int) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    cursor = None
    while True:
        page = export.list_snapshot(
            dep, snapshot=snapshot, cursor=cursor, fmt=ValueFormat.ENCODED, selection=selection, limit=limit
        )
        values = decode_exported_values(page.values_json, is_delta=False)
        out.append((values, page.snapshot, page.cursor, page.has_more))
        if not page.has_more:
            return out
        cursor = page.cursor


def _same(a: Any, b: Any) -> bool:
    """Equality that tells -0.0 from 0.0, NaN equal to NaN, and int from float."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_local_reader_pages_are_the_servers(tmp_path: Path) -> None:
    config = DeploymentConfig(background=False)
    with Deployment.open(data_dir=tmp_path / "d", config=config, create=True) as dep:
        with dep.transaction() as tx:
            tx.create_table("t")
            tx.create_table("u")
            for i in range(5):
                for doc in DOCS:
                    tx.insert("t", doc)
                tx.insert("u", {"n": i})
        snapshot = dep.read_timestamp()
        everything = Selection.everything()
        only_some_columns = Selection(
            {"": ComponentSelection({"t": TableSelection({"nan": False, "o": False}, True)}, False)}, False
        )
        for selection in (everything, only_some_columns):
            for limit in (1, 4, 100):
                reader = LocalReader(dep, snapshot_page_limit=limit)
                got = [
                    (p.values, p.snapshot, p.cursor, p.has_more)
                    for p in reader.snapshot_pages(selection, snapshot, None)
                ]
                assert _same(got, _server_pages(dep, selection, snapshot, limit))
                assert sum(len(p[0]) for p in got) == (15 if selection is only_some_columns else 20)
