"""The ``convex-connectors`` command line.

Subcommands share how a deployment is located: ``--data-dir DIR`` (SQLite, default ``./convex_data``) or
``--db postgresql://…``. Add a subcommand with::

    @main.command()
    @deployment_options
    def mycommand(store: StoreLocation) -> None:
        with open_deployment(store, read_only=True) as deployment:
            ...

``open_deployment`` refuses a location that holds no deployment unless ``create=True`` (only ``serve`` and
``import`` create one), and a writer open is refused while another process (a running server) holds the
deployment; ``read_only=True`` shares with it.
"""

from __future__ import annotations

import functools
import logging
import secrets
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from connectors.backend.engine import NS_PER_DAY, Deployment, DeploymentConfig
from connectors.backend.writer_lock import DeploymentLockedError, DeploymentNotFoundError
from connectors.keys import KeyKind, KeyNameError, KeyRegistry

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


def open_deployment(
    store: StoreLocation,
    config: DeploymentConfig | None = None,
    *,
    create: bool = False,
    read_only: bool = False,
) -> Deployment:
    """Open the deployment; failures become a clean CLI error.

    ``create``: create it if the location holds none (otherwise that is an error: most likely a mistyped
    path). ``read_only``: share with a server running on it (no writer lock, no writes)."""
    try:
        deployment = Deployment.open(
            data_dir=store.data_dir,
            db_url=store.db_url,
            config=config or DeploymentConfig(background=False),
            create=create,
            read_only=read_only,
        )
    except (DeploymentLockedError, DeploymentNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # the cause is reported, the URL's password is not
        detail = getattr(exc, "detail", "") or f"{type(exc).__name__}: {exc}"
        if exc.__cause__ is not None:
            detail += f" ({str(exc.__cause__).strip()})"
        raise click.ClickException(f"Cannot open the deployment at {store.describe()}: {detail}") from exc
    if deployment.created:
        click.echo(f"Created a new deployment at {store.describe()}.", err=True)
    return deployment


def zip_file_or_fail(path: Path) -> bool:
    """True if ``path`` is a ZIP file; a clear error otherwise, raised before any deployment is created."""
    if not zipfile.is_zipfile(path):
        raise click.ClickException(f"{path} is not a valid ZIP archive (a Convex backup is a .zip file).")
    return True


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
    deployment = open_deployment(store, DeploymentConfig(background=True, **overrides), create=True)
    try:
        registry = KeyRegistry(deployment)
        registry.secret()

        def on_ready(url: str) -> None:
            click.echo(f"Serving the deployment at {url}")
            if _claim_first_start(deployment):
                _record, key = registry.issue(KeyKind.ADMIN, f"initial-admin-{secrets.token_hex(2)}")
                click.echo("Admin key (shown only this once; keep it secret):")
                click.echo(f"  {key}")
            hint = store.cli_args()
            click.echo(
                f"Make deploy keys with: convex-connectors keygen{hint} --kind admin|export|import --name NAME"
            )
            click.echo(
                f"List, revoke or invalidate keys with: convex-connectors keys list|revoke|rotate-secret{hint}"
            )

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
@click.option(
    "--name",
    default=None,
    help="A name for the key, shown in it and in `keys list`, used by `keys revoke` (default: KIND-<id>).",
)
def keygen(store: StoreLocation, kind: str, name: str | None) -> None:
    """Print a new deploy key for the deployment (works while the server runs)."""
    with open_deployment(store, read_only=True) as deployment:
        try:
            _record, key = KeyRegistry(deployment).issue(KeyKind(kind), name)
        except KeyNameError as exc:
            raise click.BadParameter(str(exc), param_hint="'--name'") from None
    click.echo(key)


@main.group("keys")
def keys_group() -> None:
    """List, revoke and invalidate deploy keys (work while the server runs; it applies them at once)."""


@keys_group.command("list")
@deployment_options
def keys_list(store: StoreLocation) -> None:
    """Show every key made with `keygen` (name, kind, id, created, status); never the key itself."""
    with open_deployment(store, read_only=True) as deployment:
        registry = KeyRegistry(deployment)
        records = registry.list()
        legacy = registry.legacy_keys_valid()
    if not records and not legacy:
        click.echo("No keys yet. Make one with: convex-connectors keygen" + store.cli_args())
    for r in records:
        status = "revoked" if r.revoked else "active"
        click.echo(
            f"{r.name}\t{r.kind.value}\t{r.key_id}\t{r.created.isoformat(timespec='seconds')}\t{status}"
        )
    if legacy:
        click.echo(
            "legacy\t-\t-\t-\tactive: keys made before key ids existed cannot be listed or revoked one by one; "
            "they stay valid until `keys rotate-secret`."
        )


@keys_group.command("revoke")
@deployment_options
@click.argument("name")
def keys_revoke(store: StoreLocation, name: str) -> None:
    """Revoke the key called NAME (or with that id): refused from the next request on."""
    with open_deployment(store, read_only=True) as deployment:
        try:
            record = KeyRegistry(deployment).revoke(name)
        except KeyNameError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Revoked key {record.name} ({record.kind.value}, id {record.key_id}).")


@keys_group.command("rotate-secret")
@deployment_options
@click.confirmation_option(prompt="Every existing deploy key will stop working. Continue?")
def keys_rotate_secret(store: StoreLocation) -> None:
    """Replace the key-signing secret: every key, legacy keys included, stops working at once."""
    with open_deployment(store, read_only=True) as deployment:
        count = KeyRegistry(deployment).rotate_secret()
    click.echo(
        f"Rotated the secret; {count} active key(s) and any legacy keys are now invalid. "
        f"Make new ones with: convex-connectors keygen{store.cli_args()}"
    )


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


@main.command("import")
@deployment_options
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--table",
    default=None,
    help="Import a single CSV, JSON (array) or JSONL file into this table (as `npx convex import --table`).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "json", "jsonl", "zip"]),
    default=None,
    help="The file's format, when its extension does not tell (.zip, .csv, .json, .jsonl).",
)
@click.option(
    "--mode",
    type=click.Choice(["create", "replace", "append", "replace-all"]),
    default=None,
    help="create (default): refuse tables that already have documents; replace: clear them first; append: "
    "add; replace-all (backups only): make the deployment exactly the backup, deleting other tables.",
)
@click.option("--replace", "replace_flag", is_flag=True, help="Same as --mode replace.")
@click.option("--append", "append_flag", is_flag=True, help="Same as --mode append.")
@click.option("--replace-all", "replace_all_flag", is_flag=True, help="Same as --mode replace-all.")
def import_command(
    store: StoreLocation,
    path: Path,
    table: str | None,
    file_format: str | None,
    mode: str | None,
    replace_flag: bool,
    append_flag: bool,
    replace_all_flag: bool,
) -> None:
    """Import a Convex backup ZIP (as written by `npx convex export` or `convex-connectors export`),
    keeping _id, _creationTime and table numbers; or, with --table, one CSV / JSON / JSONL file."""
    from connectors.errors import ConvexError

    chosen = _import_mode(mode, replace_flag, append_flag, replace_all_flag)
    is_zip = file_format == "zip" or (file_format is None and path.suffix.lower() == ".zip")
    if table is not None and is_zip:
        raise click.UsageError(
            "--table is not supported for a ZIP backup; it names the target of a CSV, JSON or JSONL file."
        )
    if table is None and not is_zip:
        raise click.UsageError(
            f"{path.name} is not a .zip backup: give --table TABLE to import a CSV, JSON or JSONL file into"
            " one table."
        )
    if table is not None and chosen == "replace-all":
        raise click.UsageError("--replace-all restores a whole backup; with --table use --replace.")
    progress = _Progress("importing")
    # A backup must be a ZIP before a new deployment is created for it; a single file's rows are checked as
    # they are read.
    with open_deployment(store, create=zip_file_or_fail(path) if is_zip else True) as deployment:
        try:
            if table is None:
                from connectors.backup import import_backup

                summary = import_backup(deployment, path, mode=chosen, progress=progress)  # type: ignore[arg-type]
            else:
                from connectors.table_import import import_table_file

                single = import_table_file(
                    deployment,
                    table,
                    path,
                    fmt=file_format,
                    mode=chosen,  # type: ignore[arg-type]
                    progress=progress,
                )
        except ConvexError as exc:
            raise click.ClickException(exc.message) from exc
        except OSError as exc:
            raise click.ClickException(f"Cannot read {path}: {exc.strerror or exc}") from exc
        finally:
            progress.close()
    if table is None:
        _print_summary(summary, "Imported")
    else:
        click.echo(f"Imported {single.documents:,} documents into table {single.table} ({single.format}).")


def _import_mode(mode: str | None, replace: bool, append: bool, replace_all: bool) -> str:
    """One mode from --mode or the npx-style flags (--replace, --append, --replace-all)."""
    named = (("replace", replace), ("append", append), ("replace-all", replace_all))
    flags = [name for name, on in named if on]
    if len(flags) > 1 or (flags and mode is not None and mode != flags[0]):
        given = [f"--{f}" for f in flags] + ([f"--mode {mode}"] if mode is not None else [])
        raise click.UsageError(f"Choose one import mode, not {' and '.join(given)}.")
    return flags[0] if flags else (mode or "create")


from connectors.export.cli import export_command  # noqa: E402 - registered after main exists

main.add_command(export_command)

from fivetran_source.cli import fivetran_source_command, fivetran_sync_command  # noqa: E402

main.add_command(fivetran_source_command)
main.add_command(fivetran_sync_command)

if __name__ == "__main__":  # last: every command above must be registered first
    main()
