"""``convex-connectors export``: a snapshot (or the changes after a cursor) as Parquet, Avro, JSON Lines or
the Convex backup ZIP, from a deployment over HTTP (``--url``/``--key``) or a local one (``--data-dir``/``--db``,
opened read-only so it works while ``serve`` runs on it).

The older form ``export [--data-dir DIR] PATH`` (a backup ZIP at PATH, a file or a directory) still works.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from connectors.sync.state import TableRef

if TYPE_CHECKING:
    from connectors.backend.engine import DeploymentConfig
    from connectors.export.core import ExportOptions, ExportResult

# The command imports pyarrow and fastavro only when it runs (every other command starts without them).
_FORMATS: Final = ("parquet", "avro", "jsonl", "zip")
_COMPRESSIONS: Final = ("zstd", "snappy", "gzip", "none")

__all__ = ["export_command", "local_export_config"]

# An export reads each table once, in order: SQLite's page cache only has to hold the index's upper pages, and
# the default 32 MiB would fill with pages never read again (a tenth of the export's memory).
_EXPORT_SQLITE_CACHE_MIB: Final = 4

_LOG_EVERY_S: Final = 10.0


class CliProgress:
    """A tqdm bar with rows/s and, when the total is known, an ETA on a terminal; otherwise a log line to
    stderr every 10 seconds."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._bar: Any = None
        self._rows = 0
        self._start = time.monotonic()
        self._last_log = self._start

    def started(self, expected_rows: int | None) -> None:
        self._start = self._last_log = time.monotonic()
        if self._tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=expected_rows, unit=" rows", unit_scale=True, desc="exporting", leave=False
            )
        elif expected_rows:
            click.echo(f"exporting about {expected_rows:,} rows", err=True)

    def advanced(self, label: str, rows: int) -> None:
        self._rows += rows
        if self._bar is not None:
            self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(rows)
            return
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            rate = self._rows / max(now - self._start, 1e-9)
            click.echo(f"exported {self._rows:,} rows ({rate:,.0f} rows/s), now {label}", err=True)

    def finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _CursorType(click.ParamType):
    """A change cursor: the integer an earlier export printed (click's IntRange text would not say so)."""

    name = "cursor"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if not text.isascii() or not text.isdigit():
            self.fail(
                f"{value!r} is not a cursor: give the integer an earlier export printed after `--since` (its "
                "_manifest.json `cursor`), or use --since-manifest OLD_OUT.",
                param,
                ctx,
            )
        return int(text)


def _table_ref(value: str, option: str) -> TableRef:
    ref = TableRef.from_key(value.strip())
    if not ref.table:
        raise click.BadParameter(
            f"{value!r} names no table (use TABLE or COMPONENT/TABLE)", param_hint=option
        )
    return ref


def _excluded(values: tuple[str, ...]) -> dict[TableRef, tuple[str, ...]]:
    out: dict[TableRef, list[str]] = {}
    for value in values:
        table, dot, column = value.rpartition(".")
        if not dot or not table or not column:
            raise click.BadParameter(
                f"{value!r} must be TABLE.COLUMN (or COMPONENT/TABLE.COLUMN)", param_hint="'--exclude-column'"
            )
        out.setdefault(_table_ref(table, "'--exclude-column'"), []).append(column)
    return {ref: tuple(cols) for ref, cols in out.items()}


def _print_result(result: ExportResult) -> None:
    from connectors.export.core import ExportFormat

    for t in result.tables:
        label = t.table.table if not t.table.component else f"{t.table.component}:{t.table.table}"
        changes = f", {t.deletes:,} deletes" if result.since is not None else ""
        files = f" in {len(t.files)} file(s) under {t.directory}/" if t.files else ""
        click.echo(f"  {label}: {t.rows:,} rows{changes}{files}")
    for note in result.notes:
        click.echo(f"  note: {note}")
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    what = f"changes after cursor {result.since}" if result.since is not None else "snapshot"
    click.echo(
        f"Exported the {what}: {result.rows + result.deletes:,} rows in {len(result.tables)} tables to "
        f"{result.out} ({result.format.value}) in {result.seconds:.1f} s ({rate:,.0f} rows/s)."
    )
    click.echo(
        f"Snapshot timestamp {result.snapshot_ts}; continue with: --since {result.cursor} "
        f"(or --since-manifest {result.out})"
        if result.format is not ExportFormat.ZIP
        else f"Snapshot timestamp {result.snapshot_ts} (a document_deltas cursor); file {result.out}"
    )


@click.command("export")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--url", default=None, metavar="URL", help="Deployment URL (export over HTTP).")
@click.option(
    "--key",
    envvar="CONVEX_DEPLOY_KEY",
    default=None,
    metavar="KEY",
    help="Deploy key for --url (admin or export; default: $CONVEX_DEPLOY_KEY).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local SQLite data directory (default ./convex_data when no --url); works while `serve` runs.",
)
@click.option("--db", "db_url", default=None, metavar="URL", help="Local PostgreSQL deployment instead.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default=None,
    help="Output format (default parquet; zip = Convex backup for `import`/`npx convex import`).",
)
@click.option(
    "--out", default=None, metavar="PATH", help="Output directory (a .zip file for zip); a path or URI."
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="T",
    help="Only this table (COMPONENT/TABLE outside the root); repeatable.",
)
@click.option(
    "--component",
    "components",
    multiple=True,
    metavar="C",
    help="Every table of this component path; repeatable.",
)
@click.option(
    "--exclude-column",
    "excluded",
    multiple=True,
    metavar="T.C",
    help="Leave out column C of table T; repeatable.",
)
@click.option(
    "--compression",
    type=click.Choice(_COMPRESSIONS),
    default=None,
    help="Default: zstd (parquet, avro), none (jsonl).",
)
@click.option(
    "--since",
    type=_CursorType(),
    default=None,
    metavar="CURSOR",
    help="Only the changes after this cursor (an earlier export's).",
)
@click.option(
    "--since-manifest",
    default=None,
    metavar="OLD_OUT",
    help="Only the changes after the cursor in OLD_OUT/_manifest.json.",
)
@click.option(
    "--part-size-mb",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Start a new part file after this much (uncompressed) data.",
)
def export_command(
    path: Path | None,
    url: str | None,
    key: str | None,
    data_dir: Path | None,
    db_url: str | None,
    fmt: str | None,
    out: str | None,
    tables: tuple[str, ...],
    components: tuple[str, ...],
    excluded: tuple[str, ...],
    compression: str | None,
    since: int | None,
    since_manifest: str | None,
    part_size_mb: int,
) -> None:
    """Export a consistent snapshot of a deployment as Parquet, Avro, JSON Lines or a Convex backup ZIP.

    \b
      convex-connectors export --url URL --key KEY --format parquet --out ./lake
      convex-connectors export --data-dir ./convex_data --out ./lake-1 --since-manifest ./lake
      convex-connectors export --data-dir ./convex_data backup.zip   # the backup ZIP, as before

    Output: OUT/<component or _root>/<table>/part-00000.<ext> and OUT/_manifest.json (written last)."""
    from connectors.cli import StoreLocation
    from connectors.export.core import ExportError, ExportFormat, ExportOptions, read_manifest_cursor
    from connectors.export.output import OutputError

    if path is not None:
        if out is not None or (fmt not in (None, "zip")) or url is not None:
            raise click.UsageError(
                "Give either PATH (a backup ZIP of a local deployment) or --out, not both."
            )
        if tables or components or excluded or since is not None or since_manifest is not None:
            raise click.UsageError("The PATH form exports everything as a ZIP; use --out for a selection.")
        _legacy_zip(StoreLocation.from_options(data_dir, db_url), path)
        return
    if out is None:
        raise click.UsageError("Missing --out (or a PATH for a backup ZIP).")
    if since is not None and since_manifest is not None:
        raise click.UsageError("Use either --since or --since-manifest, not both.")
    if url is not None and (data_dir is not None or db_url is not None):
        raise click.UsageError("Use either --url or --data-dir/--db, not both.")
    try:
        if since_manifest is not None:
            since = read_manifest_cursor(since_manifest)
        options = ExportOptions(
            out=out,
            format=ExportFormat(fmt or "parquet"),
            tables=tuple(_table_ref(t, "'--table'") for t in tables),
            components=tuple(c.strip() for c in components),
            excluded_columns=_excluded(excluded),
            compression=compression,
            since=since,
            part_bytes=part_size_mb << 20,
        )
        if url is not None:
            result = _export_http(url, key, options)
        else:
            result = _export_local(StoreLocation.from_options(data_dir, db_url), options)
    except (ExportError, OutputError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"Cannot write {out}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted: the export is incomplete ({out} gets _manifest.json only when an export finishes); "
            "run the same command again to export from the start.",
            err=True,
        )
        sys.exit(130)
    _print_result(result)


def _convex_error(exc: Exception, where: str) -> click.ClickException:
    message = getattr(exc, "message", None) or str(exc)
    return click.ClickException(f"{where}: {message}")


def _export_http(url: str, key: str | None, options: ExportOptions) -> ExportResult:
    from connectors.client import ClientConfig, ConvexClient
    from connectors.errors import ConvexError, ForbiddenError, TransientError, UnauthenticatedError
    from connectors.export.core import run_export
    from connectors.sync import HttpReader

    if not key:
        raise click.UsageError("--url needs a deploy key: --key KEY or the CONVEX_DEPLOY_KEY variable.")
    try:
        config = ClientConfig(deployment_url=url, deploy_key=key)
        # Fail fast on a wrong URL or key (the export itself retries transient failures).
        with ConvexClient(replace(config, max_retries=1, backoff_max_s=1.0)) as probe:
            probe.test_streaming_export_connection()
    except TransientError as exc:
        raise click.ClickException(
            f"Cannot reach {url}: {exc.message} Check the URL and that the deployment is running."
        ) from None
    except (UnauthenticatedError, ForbiddenError) as exc:
        # The server's text names the key problem; say which option to fix.
        raise click.ClickException(
            f"Cannot export from {url}: {exc.message.rstrip('.')}. Check --key (or CONVEX_DEPLOY_KEY): it must be an "
            "admin or export deploy key of this deployment (`convex-connectors keygen --kind export` makes one "
            "for a local deployment)."
        ) from None
    except (ConvexError, ValueError) as exc:
        raise _convex_error(exc, f"Cannot export from {url}") from None
    with ConvexClient(config) as client:
        try:
            return run_export(HttpReader(client), options, progress=CliProgress())
        except ConvexError as exc:
            raise _convex_error(exc, f"The export from {url} failed (nothing was committed)") from None


def local_export_config() -> DeploymentConfig:
    """How ``--data-dir``/``--db`` exports open the deployment (the benchmark opens it the same way)."""
    from connectors.backend.engine import DeploymentConfig

    return DeploymentConfig(background=False, sqlite_cache_mib=_EXPORT_SQLITE_CACHE_MIB)


def _export_local(store: Any, options: ExportOptions) -> ExportResult:
    from connectors.backup import backup_metadata
    from connectors.cli import open_deployment
    from connectors.errors import ConvexError
    from connectors.export.core import ReadOnlyLocalReader, build_selection, run_export

    with open_deployment(store, local_export_config(), read_only=True) as deployment:
        reader = ReadOnlyLocalReader(deployment)
        infos = [t for t in deployment.tables() if t.state != "hidden"]
        numbers = {TableRef(t.component, t.name): t.table_number for t in infos}
        expected: int | None = None
        if options.since is None:
            selection = build_selection(options.tables, options.components, options.excluded_columns)
            expected = sum(
                deployment.shape_of(t).document_count
                for t in infos
                if selection.accepts(TableRef(t.component, t.name))
            )
        try:
            return run_export(
                reader,
                options,
                progress=CliProgress(),
                table_numbers=numbers,
                expected_rows=expected,
                zip_metadata=backup_metadata(deployment) if options.format.value == "zip" else None,
            )
        except ConvexError as exc:
            raise _convex_error(
                exc, f"The export of {store.describe()} failed (nothing was committed)"
            ) from None


def _legacy_zip(store: Any, path: Path) -> None:
    """``export [--data-dir DIR] PATH``: the whole deployment as a backup ZIP (the shared ZIP writer)."""
    from connectors.backup import export_backup
    from connectors.cli import _print_summary, _Progress, open_deployment

    progress = _Progress("exporting")
    with open_deployment(store, read_only=True) as deployment:
        try:
            summary = export_backup(deployment, path, progress=progress)
        except OSError as exc:
            raise click.ClickException(f"Cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            progress.close()
    _print_summary(summary, "Exported")
    click.echo(f"Snapshot timestamp {summary.snapshot_ts} (a document_deltas cursor); file {summary.path}")
