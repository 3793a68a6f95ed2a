"""Command line: ``fivetran-destination`` (the gRPC server) and ``fivetran-destination-test`` (the replay
harness). Registered in ``connectors/cli.py``; ``fivetran-destination`` is also a console script."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import grpc
import orjson

from connectors.constants import FIVETRAN_DESTINATION_PORT
from connectors.fivetran.config import ConfigurationError, parse_configuration
from connectors.fivetran.jsonlog import configure_logging
from connectors.fivetran.server import PortUnavailableError, ServerSettings, serve
from fivetran_destination.service import ORIGIN, client_for, register

NAME = "Convex Fivetran destination"


@click.command("fivetran-destination")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=FIVETRAN_DESTINATION_PORT,
    show_default=True,
    help="gRPC port (IPv6 and IPv4).",
)
def destination_command(port: int) -> None:
    """Run the Fivetran destination connector (Partner SDK v2 gRPC server)."""
    configure_logging(ORIGIN)
    try:
        code = serve(ServerSettings(port), register, NAME)
    except PortUnavailableError as e:
        raise click.ClickException(str(e)) from None
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``fivetran-destination`` console script."""
    destination_command.main(args=list(argv) if argv is not None else None, prog_name="fivetran-destination")


@click.command("fivetran-destination-test")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A destination-tester input JSON file.",
)
@click.option(
    "--url",
    envvar="CONVEX_URL",
    help="Deployment URL (or configuration.json next to the input, or CONVEX_URL).",
)
@click.option(
    "--key", envvar="CONVEX_DEPLOY_KEY", help="Deploy key (or configuration.json, or CONVEX_DEPLOY_KEY)."
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Drive a destination already running on this port (default: start one in this process).",
)
@click.option("--schema-name", default="tester", show_default=True, help="Fivetran schema of the tables.")
@click.option("--plain-text", is_flag=True, help="Write CSV files without zstd and AES.")
@click.option(
    "--print-tables/--no-print-tables",
    default=True,
    show_default=True,
    help="Print each table's documents at the end.",
)
def tester_command(
    input_path: str,
    url: str | None,
    key: str | None,
    port: int | None,
    schema_name: str,
    plain_text: bool,
    print_tables: bool,
) -> None:
    """Replay a Fivetran destination-tester input file against the destination, over gRPC."""
    from fivetran_destination.harness import HarnessError, replay
    from fivetran_destination.migrate import documents
    from fivetran_destination.model import convex_table_name

    # The in-process destination's warnings repeat the failures this command reports on its FAIL lines.
    logging.getLogger("fivetran_destination").setLevel(logging.ERROR)
    configuration = _configuration(input_path, url, key)
    try:
        config = parse_configuration(configuration)
    except ConfigurationError as e:
        given = configuration.get("url")
        where = (
            f"the url was {given!r}: give the deployment's root URL, e.g. http://127.0.0.1:3210"
            if given is not None
            else "give --url and --key, or a configuration.json next to the input"
        )
        raise click.UsageError(f"{e} ({where})") from None
    try:
        report = replay(
            input_path, configuration, port=port, plain=plain_text, schema=schema_name, echo=click.echo
        )
    except HarnessError as e:
        raise click.ClickException(str(e)) from None
    except grpc.RpcError as e:
        if port is not None and e.code() is grpc.StatusCode.UNAVAILABLE:
            raise click.ClickException(
                f"No destination answers on localhost:{port}. Start one there (`convex-connectors "
                f"fivetran-destination --port {port}`), or leave out --port to run one in this process."
            ) from None
        raise click.ClickException(f"The destination failed: {e.code().name}: {e.details()}") from None
    if print_tables and all(s.ok for s in report.steps if s.label.startswith("Test")):
        spec = json.loads(Path(input_path).read_text(encoding="utf-8"))
        names = list(spec.get("create_table") or {})
        for batch in spec.get("schema_migration") or []:
            for entries in batch.values():
                names += [str(e["to_table"]) for e in entries if "to_table" in e]
        client = client_for(config)
        try:
            for name in dict.fromkeys(names):
                convex = convex_table_name(schema_name, name)
                docs = sorted(
                    orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode() for d in documents(client, convex)
                )
                click.echo(f"table {convex} ({len(docs)} documents)")
                for line in docs:
                    click.echo(f"  {line}")
        finally:
            client.close()
    failed = [s for s in report.steps if not s.ok]
    click.echo(f"{len(report.steps) - len(failed)} of {len(report.steps)} operations succeeded")
    if failed:
        sys.exit(1)


def _configuration(input_path: str, url: str | None, key: str | None) -> dict[str, str]:
    configuration: dict[str, Any] = {}
    candidate = os.path.join(os.path.dirname(os.path.abspath(input_path)), "configuration.json")
    if os.path.exists(candidate):
        with open(candidate, encoding="utf-8") as f:
            configuration = json.load(f)
    if url:
        configuration["url"] = url
    if key:
        configuration["key"] = key
    return {str(k): str(v) for k, v in configuration.items()}
