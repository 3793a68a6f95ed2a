"""The README's `fivetran-sync` example, pasted as written into bash (only the port changes): it seeds a
deployment, serves it, syncs it into DuckDB, queries the result and syncs again."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.test_readme_examples import DEFAULT_PORT, README, _free_port, run_pasted


def test_readme_fivetran_sync_example_works_when_pasted(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    (block,) = [b for b in blocks if "fivetran-sync" in b]
    script = block.replace(DEFAULT_PORT, str(_free_port()))
    text, err, returncode = run_pasted(script, tmp_path, timeout_s=180)
    assert returncode == 0, (text, err)
    assert "Synced 1,000 rows, 0 deletes, 1 truncates" in text
    assert "Synced 0 rows" in text  # the second run only follows the changes
    assert "user" in text and "_fivetran_synced" in text  # the DuckDB query printed the rows
    assert (
        (tmp_path / "out.duckdb.state.json")
        .read_text()
        .startswith('{"version":2,"checkpoint":{"DeltaUpdates"')
    )
