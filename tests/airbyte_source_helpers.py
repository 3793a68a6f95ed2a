"""Helpers for driving ``source-convex`` (ours and the published one) in tests and benchmarks: config,
catalog and state files, running a command in-process or as a console script, and a replica built only
from the RECORD messages."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.sync import TableRef
from connectors.typemap.airbyte import to_airbyte_value

METADATA = (
    "_table",
    "_component",
    "_ts",
    "_deleted",
    "_ab_cdc_lsn",
    "_ab_cdc_updated_at",
    "_ab_cdc_deleted_at",
)
OUR_SCRIPT = Path(sys.executable).parent / "source-convex"


@dataclass
class Files:
    """Config, catalog and state files of one connection, in ``root``."""

    root: Path
    url: str
    key: str

    def config(self, **extra: Any) -> Path:
        path = self.root / "config.json"
        path.write_text(json.dumps({"deployment_url": self.url, "access_key": self.key, **extra}))
        return path

    def catalog(self, streams: Sequence[dict[str, Any]], mode: str = "incremental") -> Path:
        configured = {
            "streams": [
                {
                    "stream": s,
                    "sync_mode": mode,
                    "destination_sync_mode": "append" if mode == "incremental" else "overwrite",
                    "cursor_field": ["_ts"],
                    "primary_key": [["_id"]],
                }
                for s in streams
            ]
        }
        path = self.root / f"catalog-{mode}.json"
        path.write_text(json.dumps(configured))
        return path

    def state(self, states: Sequence[dict[str, Any]], name: str = "state.json") -> Path:
        path = self.root / name
        path.write_text(json.dumps(list(states)))
        return path


def parse_lines(raw: bytes | str) -> list[dict[str, Any]]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run_in_process(*argv: str) -> list[dict[str, Any]]:
    """Our ``source-convex`` through its entrypoint in this process (exceptions propagate)."""
    from source_convex.entrypoint import launch

    out = io.BytesIO()
    launch(list(argv), out=out)
    return parse_lines(out.getvalue())


@dataclass
class Completed:
    returncode: int
    messages: list[dict[str, Any]]
    stderr: str


def run_script(script: Path, *argv: str, timeout: float = 120) -> Completed:
    proc = subprocess.run([str(script), *argv], capture_output=True, timeout=timeout, check=False)
    return Completed(proc.returncode, parse_lines(proc.stdout), proc.stderr.decode(errors="replace"))


def of_type(messages: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == kind]


def catalog_streams(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    (catalog,) = of_type(messages, "CATALOG")
    return catalog["catalog"]["streams"]


def stream_states(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The STATE messages' ``state`` objects, as a later run's state file holds them."""
    return [m["state"] for m in of_type(messages, "STATE")]


def latest_states(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last state of each stream (what the platform stores after a sync)."""
    last: dict[tuple[str, str | None], dict[str, Any]] = {}
    for state in stream_states(messages):
        d = state["stream"]["stream_descriptor"]
        last[(d["name"], d.get("namespace"))] = {"type": "STREAM", "stream": state["stream"]}
    return list(last.values())


@dataclass
class Replica:
    """Tables rebuilt from RECORD messages only: upserts by ``_id``, deletes by ``_ab_cdc_deleted_at``."""

    tables: dict[TableRef, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def apply(self, messages: Sequence[dict[str, Any]]) -> Replica:
        for m in of_type(messages, "RECORD"):
            record = m["record"]
            ref = TableRef(record.get("namespace") or "", record["stream"])
            data = record["data"]
            table = self.tables.setdefault(ref, {})
            if data.get("_ab_cdc_deleted_at") is not None:
                table.pop(data["_id"], None)
            else:
                table[data["_id"]] = {k: v for k, v in data.items() if k not in METADATA}
        return self

    def contents(self) -> dict[TableRef, dict[str, dict[str, Any]]]:
        return {ref: docs for ref, docs in self.tables.items() if docs}


def airbyte_truth(dep: Any) -> dict[TableRef, dict[str, dict[str, Any]]]:
    """The deployment's live documents as our source writes them (Bytes base64, Int64 integers, NaN text)."""
    out: dict[TableRef, dict[str, dict[str, Any]]] = {}
    for info in dep.tables():
        docs = {d.id: to_airbyte_value(d.value()) for d in dep.iter_snapshot(info)}
        if docs:
            out[TableRef(info.component, info.name)] = docs
    return out


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- the published connector (airbyte.md §5.4), in its own virtual environment ----------------------------

PUBLISHED_PACKAGE = "airbyte-source-convex==0.4.51"
REPO = Path(__file__).resolve().parents[1]


def published_venv() -> Path:
    """The virtual environment holding ``airbyte-source-convex`` 0.4.51 (it pins airbyte-cdk 0.80 and
    pydantic 1, so never the project's environment), created on first use and then reused: under
    ``$CONVEX_AIRBYTE_PUBLISHED_VENV``, else ``.venv-airbyte-published/`` in the checkout."""
    import os

    root = Path(os.environ.get("CONVEX_AIRBYTE_PUBLISHED_VENV", REPO / ".venv-airbyte-published"))
    script = root / "bin" / "source-convex"
    marker = root / ".installed"
    if script.exists() and marker.exists() and marker.read_text() == PUBLISHED_PACKAGE:
        return script
    if sys.version_info >= (3, 12):
        raise RuntimeError(f"{PUBLISHED_PACKAGE} needs Python < 3.12 (it pins airbyte-cdk 0.80)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, timeout=300)
    subprocess.run(
        [
            str(root / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            PUBLISHED_PACKAGE,
        ],
        check=True,
        timeout=900,
        capture_output=True,
    )
    marker.write_text(PUBLISHED_PACKAGE)
    return script
