"""The SQLite page cache of a deployment's connections follows ``DeploymentConfig.sqlite_cache_mib`` (the
export opens with a small one: it reads each page once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.export.cli import local_export_config


def _reader_cache_kib(dep: Deployment) -> int:
    ((size,),) = dep.persistence.read("PRAGMA cache_size")
    return -int(size)  # negative: KiB


def test_reader_connections_use_the_configured_cache(tmp_path: Path) -> None:
    with Deployment.open(data_dir=tmp_path, config=DeploymentConfig(background=False)) as dep:
        assert _reader_cache_kib(dep) == 32 * 1024
    with Deployment.open(data_dir=tmp_path, config=local_export_config(), read_only=True) as dep:
        assert _reader_cache_kib(dep) == local_export_config().sqlite_cache_mib * 1024 < 32 * 1024


def test_a_cache_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="sqlite_cache_mib must be positive"):
        DeploymentConfig(sqlite_cache_mib=0)
