"""The README's "Snapshot export" example pasted as written, after the README's serving example, against a
real `convex-connectors serve`; then its Python read-back (pyarrow and DuckDB) run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.integration.test_readme_examples import (
    DEFAULT_PORT,
    README,
    _free_port,
    _sh_block_with_curl,
    run_pasted,
)


def _export_blocks() -> tuple[str, str]:
    section = README.read_text().split("## Snapshot export", 1)[1].split("\n## ", 1)[0]
    (sh,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    (py,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return sh, py


def test_readme_snapshot_export_example_works_when_pasted(tmp_path: Path) -> None:
    sh, py = _export_blocks()
    assert "--url" in sh and "--since-manifest" in sh and "duckdb" in py
    port = str(_free_port())
    script = (_sh_block_with_curl() + sh).replace(DEFAULT_PORT, port)
    text, err, returncode = run_pasted(script, tmp_path)
    assert returncode == 0, (text, err)
    assert "Exported the snapshot: 2 rows in 1 tables to ./lake (parquet)" in text, text
    assert "Exported the changes after cursor" in text, text
    assert (tmp_path / "lake" / "_manifest.json").is_file()
    assert (tmp_path / "lake-changes-1" / "_manifest.json").is_file()
    read = subprocess.run(
        [sys.executable, "-c", py], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.startswith("2 ") and "Ada" in read.stdout and "Grace" in read.stdout, read.stdout
