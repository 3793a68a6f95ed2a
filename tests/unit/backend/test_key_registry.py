"""The deploy-key registry on real storage (SQLite and PostgreSQL): keys carry an id, the deployment stores
only (id, name, kind, created, revoked), revocation and secret rotation apply to a ``KeyRing`` at once, also
when made through another open of the deployment (as the CLI does while the server runs), and legacy keys
(no id) stay valid until the secret is rotated."""

from __future__ import annotations

import pytest

from connectors import keys
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.keys import KeyKind, KeyNameError, KeyRegistry, KeyRing
from tests.conftest import DeploymentFactory, require_pg


def _reader(factory: DeploymentFactory) -> Deployment:
    """A second, read-only open of the same deployment: what `keygen`/`keys` do next to a running server."""
    config = DeploymentConfig(background=False)
    if factory.kind == "sqlite":
        return Deployment.open(data_dir=factory.location, config=config, read_only=True)
    return Deployment.open(db_url=require_pg(), pg_schema=factory.location, config=config, read_only=True)


def _all_text(dep: Deployment) -> str:
    rows = dep.persistence.read("SELECT key_id, name, kind, created_ms, revoked FROM deploy_keys")
    rows += dep.persistence.read("SELECT key, value FROM globals")
    return repr(rows)


def test_issue_list_revoke_rotate_apply_at_once(deployment_factory: DeploymentFactory) -> None:
    server_side = deployment_factory.open()
    ring = KeyRing(KeyRegistry(server_side))
    cli = _reader(deployment_factory)
    try:
        registry = KeyRegistry(cli)
        ci_record, ci_key = registry.issue(KeyKind.EXPORT, "ci")
        admin_record, admin_key = registry.issue(KeyKind.ADMIN)
        assert ci_key.startswith("export:ci|") and admin_record.name.startswith("admin-")
        assert keys.verify(registry.secret(), ci_key) == keys.VerifiedKey(KeyKind.EXPORT, ci_record.key_id)
        assert ring.verify(ci_key) is KeyKind.EXPORT and ring.verify(admin_key) is KeyKind.ADMIN

        listed = registry.list()
        assert {(r.name, r.kind, r.revoked) for r in listed} == {
            ("ci", KeyKind.EXPORT, False),
            (admin_record.name, KeyKind.ADMIN, False),
        }
        # Only the id, name, kind, time and status are stored: never the key text or its MAC.
        stored = _all_text(server_side)
        for key in (ci_key, admin_key):
            payload = key.rpartition("|")[2]
            assert payload not in stored and payload[-40:] not in stored

        with pytest.raises(KeyNameError, match="already exists"):
            registry.issue(KeyKind.ADMIN, "ci")
        with pytest.raises(KeyNameError, match="letters, digits"):
            registry.issue(KeyKind.ADMIN, "has space")

        assert registry.revoke("ci").revoked
        assert ring.verify(ci_key) is None  # the very next check, through the other open
        assert ring.verify(admin_key) is KeyKind.ADMIN
        with pytest.raises(KeyNameError, match="no active key named 'ci'"):
            registry.revoke("ci")
        again_record, again = registry.issue(KeyKind.EXPORT, "ci")  # a revoked key's name can be reused
        assert ring.verify(again) is KeyKind.EXPORT and ring.verify(ci_key) is None
        assert registry.revoke(again_record.key_id).name == "ci"  # revoking by id works too

        # A key made with a valid MAC but an id the registry never saw is refused.
        forged_id = keys.issue_key(registry.secret(), KeyKind.ADMIN, key_id=b"\x01" * 16)
        assert (
            keys.verify_key(registry.secret(), forged_id) is KeyKind.ADMIN and ring.verify(forged_id) is None
        )

        assert registry.rotate_secret() == 1
        assert ring.verify(admin_key) is None
        assert all(r.revoked for r in registry.list())
        _, fresh = registry.issue(KeyKind.IMPORT, "after")
        assert ring.verify(fresh) is KeyKind.IMPORT
    finally:
        cli.close()


def test_legacy_keys_stay_valid_until_the_secret_is_rotated(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open()
    legacy = keys.issue_key(keys.instance_secret(dep), KeyKind.ADMIN)  # a key made before key ids
    registry = KeyRegistry(dep)
    ring = KeyRing(registry)
    assert keys.verify(registry.secret(), legacy) == keys.VerifiedKey(KeyKind.ADMIN, None)
    assert ring.verify(legacy) is KeyKind.ADMIN
    assert registry.legacy_keys_valid()
    registry.rotate_secret()
    assert ring.verify(legacy) is None and not registry.legacy_keys_valid()


def test_a_new_deployment_has_no_legacy_keys(deployment_factory: DeploymentFactory) -> None:
    registry = KeyRegistry(deployment_factory.open())
    assert not registry.legacy_keys_valid() and registry.list() == []
