"""The export's relaxed garbage collection is undone when the (last) export ends, even on an error."""

from __future__ import annotations

import gc

import pytest

from connectors.export.core import _bulk_gc


def test_bulk_gc_restores_the_collector_settings() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), _bulk_gc():
        assert gc.get_threshold()[0] >= 200_000
        assert gc.get_freeze_count() > 0
        with _bulk_gc():  # a second export at the same time shares the setting
            assert gc.get_threshold()[0] >= 200_000
        assert gc.get_threshold()[0] >= 200_000  # still relaxed: the first export runs on
        raise RuntimeError("the export failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
