"""The connector's commands: ``fivetran-source`` (the gRPC server Fivetran talks to) and ``fivetran-sync``
(the local sync runner). Both are also ``convex-connectors`` subcommands (``connectors/cli.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from connectors.constants import FIVETRAN_LOG_ORIGIN_SOURCE, FIVETRAN_SOURCE_PORT


@click.command("fivetran-source")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=FIVETRAN_SOURCE_PORT,
    show_default=True,
    help="gRPC port, on IPv6 and IPv4.",
)
@click.option(
    "--single-records",
    is_flag=True,
    help="Send one record per message (for hosts that do not accept `records` batches).",
)
@click.option(
    "--gzip-update",
    is_flag=True,
    help="Gzip the Update stream (only worth its CPU when Fivetran reaches the connector over a slow network).",
)
def fivetran_source_command(port: int, single_records: bool, gzip_update: bool) -> None:
    """Run the Convex Fivetran source connector (Partner SDK v2 gRPC server) until SIGTERM."""
    from connectors.fivetran.jsonlog import configure_logging
    from connectors.fivetran.server import PortUnavailableError, ServerSettings, serve
    from fivetran_source.service import SourceConnector, SourceOptions, register

    configure_logging(FIVETRAN_LOG_ORIGIN_SOURCE)
    connector = SourceConnector(SourceOptions(single_records=single_records, gzip_update=gzip_update))
    try:
        code = serve(ServerSettings(port=port), register(connector), "Convex Fivetran source")
    except PortUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@click.command("fivetran-sync")
@click.option("--url", required=True, help="Deployment URL, e.g. https://aware-llama-900.convex.cloud")
@click.option("--key", required=True, envvar="CONVEX_DEPLOY_KEY", help="Deploy key (or CONVEX_DEPLOY_KEY).")
@click.option(
    "--warehouse",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Local warehouse file: *.duckdb (DuckDB) or *.sqlite / *.db (SQLite).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the last checkpoint is kept (default: <warehouse>.state.json); a re-run continues from it.",
)
@click.option("--single-records", is_flag=True, help="Run the connector with one record per message.")
@click.option(
    "--component",
    "components",
    multiple=True,
    help="Sync only this component (its Fivetran schema name; `app` is the root). Repeatable.",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    help="Sync only this table: TABLE (in every synced component) or COMPONENT.TABLE. Repeatable.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
def fivetran_sync_command(
    url: str,
    key: str,
    warehouse: Path,
    state_path: Path | None,
    single_records: bool,
    progress: bool | None,
    components: tuple[str, ...],
    tables: tuple[str, ...],
) -> None:
    """Sync a deployment into a local warehouse through the Fivetran connector, as Fivetran would load it.

    Runs the connector's gRPC server on a loopback port and calls Schema and Update on it with a real gRPC
    client, applying Fivetran's semantics (upsert by `_id`, `_fivetran_synced`, `_fivetran_deleted`,
    TRUNCATE). Run it again to sync the changes since the last checkpoint.
    """
    import logging
    import os

    # gRPC's C core may print INFO lines (a GOAWAY when the connection test fails) next to the real error.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from fivetran_source.runner import RunnerError, SyncRunner

    # The connector runs in this process: its failures reach the user once, as this command's error.
    logging.getLogger("fivetran_source").setLevel(logging.ERROR)

    try:
        summary = SyncRunner(
            url=url,
            key=key,
            warehouse=warehouse,
            state_path=state_path,
            single_records=single_records,
            progress=sys.stderr.isatty() if progress is None else progress,
            tables=tables,
            components=components,
        ).run()
    except RunnerError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted: everything up to the last checkpoint is in {warehouse}; run the same command again "
            "to continue from there.",
            err=True,
        )
        sys.exit(130)
    click.echo(summary.describe())
