"""The ``convex-connectors`` command line.

Subcommands share how a deployment is located: ``--data-dir DIR`` (SQLite, default ``./convex_data``) or
``--db postgresql://…``. Add a subcommand with::

    @main.command()
    @deployment_options
    def mycommand(store: StoreLocation) -> None:
        with open_deployment(store) as deployment:
            ...
"""

from __future__ import annotations

import functools
import logging
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from connectors import keys
from connectors.backend.engine import NS_PER_DAY, Deployment, DeploymentConfig
from connectors.backend.sqlite import DB_FILE
from connectors.keys import KeyKind

__all__ = ["DEFAULT_DATA_DIR", "StoreLocation", "deployment_options", "main", "open_deployment"]

DEFAULT_DATA_DIR: Final = Path("convex_data")
# Deployment metadata: set once the first-start admin key has been printed.
ADMIN_KEY_SHOWN_META: Final = "admin_key_shown"
_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class StoreLocation:
    """Where a deployment lives: exactly one of a SQLite data directory or a PostgreSQL URL."""

    data_dir: Path | None = None
    db_url: str | None = None

    def __post_init__(self) -> None:
        if (self.data_dir is None) == (self.db_url is None):
            raise ValueError("Give exactly one of data_dir and db_url")

    @classmethod
    def from_options(cls, data_dir: Path | None, db_url: str | None) -> StoreLocation:
        if data_dir is not None and db_url is not None:
            raise click.UsageError("Use either --data-dir or --db, not both.")
        if db_url is not None:
            if not db_url.startswith(_POSTGRES_SCHEMES):
                raise click.BadParameter("must be a postgresql:// URL", param_hint="'--db'")
            return cls(db_url=db_url)
        return cls(data_dir=data_dir if data_dir is not None else DEFAULT_DATA_DIR)

    def describe(self) -> str:
        """For messages: the data directory, or the database URL without its password."""
        if self.data_dir is not None:
            return str(self.data_dir)
        assert self.db_url is not None
        parts = urlsplit(self.db_url)
        if parts.password is None:
            return self.db_url
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))

    def cli_args(self) -> str:
        """The options that select this deployment again (the URL is elided, it may hold a password)."""
        if self.data_dir is not None:
            return "" if self.data_dir == DEFAULT_DATA_DIR else f" --data-dir {self.data_dir}"
        return " --db <URL>"


def deployment_options(func: F) -> F:
    """Add ``--data-dir``/``--db`` to a command; it receives them as ``store: StoreLocation``."""

    @functools.wraps(func)
    def wrapper(*args: Any, data_dir: Path | None, db_url: str | None, **kwargs: Any) -> Any:
        return func(*args, store=StoreLocation.from_options(data_dir, db_url), **kwargs)

    wrapper = click.option(
        "--db",
        "db_url",
        metavar="URL",
        default=None,
        help="PostgreSQL URL (postgresql://user:pass@host/db) instead of a local data directory.",
    )(wrapper)
    wrapper = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"SQLite data directory (default: ./{DEFAULT_DATA_DIR}).",
    )(wrapper)
    return wrapper  # type: ignore[return-value]


def open_deployment(store: StoreLocation, config: DeploymentConfig | None = None) -> Deployment:
    """Open (creating if needed) the deployment; failures become a clean CLI error."""
    try:
        return Deployment.open(
            data_dir=store.data_dir,
            db_url=store.db_url,
            config=config or DeploymentConfig(background=False),
        )
    except Exception as exc:  # the cause is reported, the URL's password is not
        detail = getattr(exc, "detail", "") or f"{type(exc).__name__}: {exc}"
        if exc.__cause__ is not None:
            detail += f" ({str(exc.__cause__).strip()})"
        raise click.ClickException(f"Cannot open the deployment at {store.describe()}: {detail}") from exc


@click.group()
@click.version_option(package_name="convex-connectors")
def main() -> None:
    """Convex-compatible document store with the streaming export/import APIs, and connectors."""


_DAYS = click.FloatRange(min=0, min_open=True)


@main.command()
@deployment_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=3210, show_default=True)
@click.option("--retention-days", type=_DAYS, default=None, help="Change-log retention (default 14).")
@click.option(
    "--snapshot-max-age-days", type=_DAYS, default=None, help="Oldest list_snapshot snapshot (default 5)."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    store: StoreLocation,
    host: str,
    port: int,
    retention_days: float | None,
    snapshot_max_age_days: float | None,
    log_level: str,
) -> None:
    """Serve the streaming export and import HTTP APIs."""
    from connectors.server.app import ServerConfig, run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {}
    if retention_days is not None:
        overrides["retention_ns"] = int(retention_days * NS_PER_DAY)
    if snapshot_max_age_days is not None:
        overrides["snapshot_max_age_ns"] = int(snapshot_max_age_days * NS_PER_DAY)
    deployment = open_deployment(store, DeploymentConfig(background=True, **overrides))
    try:
        secret = keys.instance_secret(deployment)

        def on_ready(url: str) -> None:
            click.echo(f"Serving the deployment at {url}")
            if _claim_first_start(deployment):
                click.echo("Admin key (shown only this once; keep it secret):")
                click.echo(f"  {keys.issue_key(secret, KeyKind.ADMIN)}")
            hint = store.cli_args()
            click.echo(f"Make deploy keys with: convex-connectors keygen{hint} --kind admin|export|import")

        run(deployment, host, port, ServerConfig(), on_ready, log_level=log_level)
    finally:
        deployment.close()


def _claim_first_start(deployment: Deployment) -> bool:
    """True exactly once per deployment, even if two servers start at the same time."""
    if deployment.get_meta(ADMIN_KEY_SHOWN_META) is not None:
        return False
    token = secrets.token_hex(8)
    return deployment.set_meta_if_absent(ADMIN_KEY_SHOWN_META, token) == token


@main.command()
@deployment_options
@click.option(
    "--kind",
    type=click.Choice([k.value for k in KeyKind]),
    default=KeyKind.ADMIN.value,
    show_default=True,
    help="admin: everything; export: streaming export only; import: streaming import only.",
)
@click.option("--name", default="local", show_default=True, help="A label shown in the key.")
def keygen(store: StoreLocation, kind: str, name: str) -> None:
    """Print a new deploy key for the deployment."""
    with open_deployment(store) as deployment:
        secret = keys.instance_secret(deployment)
    try:
        key = keys.issue_key(secret, KeyKind(kind), name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--name'") from None
    click.echo(key)


class _Progress:
    """A tqdm bar on a terminal (documents per table); silent when stderr is not a TTY."""

    def __init__(self, verb: str) -> None:
        self._verb = verb
        self._bar: Any = None
        self._label: str | None = None
        self._last = 0
        self._enabled = sys.stderr.isatty()

    def __call__(self, label: str, done: int) -> None:
        if not self._enabled:
            return
        from tqdm import tqdm

        if label != self._label:
            self.close()
            self._bar = tqdm(desc=f"{self._verb} {label}", unit=" docs", unit_scale=True, leave=False)
            self._label, self._last = label, 0
        self._bar.update(done - self._last)
        self._last = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _print_summary(summary: Any, verb: str) -> None:
    for label, count in summary.documents.items():
        click.echo(f"  {label}: {count:,} documents")
    for note in summary.notes:
        click.echo(f"  note: {note}")
    click.echo(f"{verb} {summary.total_documents:,} documents in {len(summary.tables)} tables.")


@main.command("export")
@deployment_options
@click.argument("path", type=click.Path(path_type=Path))
def export_command(store: StoreLocation, path: Path) -> None:
    """Export every table (all components) as a Convex backup ZIP at PATH (a file, or a directory to
    write snapshot_<ts>.zip into). One consistent snapshot; Int64, Bytes and special floats exact."""
    from connectors.backup import export_backup

    if store.data_dir is not None and not (store.data_dir / DB_FILE).exists():
        # Opening would create an empty deployment and export nothing: almost surely a wrong path.
        raise click.ClickException(
            f"There is no deployment in {store.data_dir} (no {DB_FILE}). Check --data-dir."
        )
    progress = _Progress("exporting")
    with open_deployment(store) as deployment:
        try:
            summary = export_backup(deployment, path, progress=progress)
        except OSError as exc:
            raise click.ClickException(f"Cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            progress.close()
    _print_summary(summary, "Exported")
    click.echo(f"Snapshot timestamp {summary.snapshot_ts} (a document_deltas cursor); file {summary.path}")


@main.command("import")
@deployment_options
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["create", "replace", "append"]),
    default="create",
    show_default=True,
    help="create: refuse tables that already have documents; replace: clear them first; append: add.",
)
def import_command(store: StoreLocation, path: Path, mode: str) -> None:
    """Import a Convex backup ZIP (as written by `npx convex export` or `convex-connectors export`),
    keeping _id, _creationTime and table numbers."""
    from connectors.backup import import_backup
    from connectors.errors import ConvexError

    progress = _Progress("importing")
    with open_deployment(store) as deployment:
        try:
            summary = import_backup(deployment, path, mode=mode, progress=progress)  # type: ignore[arg-type]
        except ConvexError as exc:
            raise click.ClickException(exc.message) from exc
        except OSError as exc:
            raise click.ClickException(f"Cannot read {path}: {exc.strerror or exc}") from exc
        finally:
            progress.close()
    _print_summary(summary, "Imported")


from fivetran_source.cli import fivetran_source_command, fivetran_sync_command  # noqa: E402

main.add_command(fivetran_source_command)
main.add_command(fivetran_sync_command)

if __name__ == "__main__":  # last: every command above must be registered first
    main()
