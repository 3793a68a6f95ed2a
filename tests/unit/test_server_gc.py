"""The bulk-write endpoints parse and apply with the cyclic GC paused, and only they: the collector is back
on after the request, also when it fails, and other requests run with it on."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from connectors.backend.engine import Deployment
from connectors.errors import BadRequestError
from connectors.keys import Operation
from connectors.server.app import EMPTY, Reply, ServerConfig, _Endpoint, _Server
from connectors.server.auth import Api


def _recording(seen: list[bool], fail: bool = False) -> Any:
    def work(body: Any) -> Reply:
        assert body == [{"a": 1}]
        seen.append(gc.isenabled())
        if fail:
            raise BadRequestError("Bad", "the work failed")
        return EMPTY

    return work


@pytest.mark.parametrize("pause_gc", [True, False])
def test_run_pauses_the_collector_only_for_bulk_writes(deployment: Deployment, pause_gc: bool) -> None:
    server = _Server(deployment, ServerConfig())
    seen: list[bool] = []
    spec = _Endpoint(Api.IMPORT, Operation.IMPORT_BACKUPS, "json", _recording(seen), 1000, pause_gc=pause_gc)
    assert gc.isenabled()
    server._run(spec, b'[{"a": 1}]', False)
    assert seen == [not pause_gc]
    assert gc.isenabled()
    failing = _Endpoint(
        Api.IMPORT, Operation.IMPORT_BACKUPS, "json", _recording(seen, fail=True), 1000, pause_gc=pause_gc
    )
    with pytest.raises(BadRequestError):
        server._run(failing, b'[{"a": 1}]', False)
    assert seen == [not pause_gc, not pause_gc]
    assert gc.isenabled()
