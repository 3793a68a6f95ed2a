"""Fivetran JSON-line logging (fivetran-sdk.md §5.2) and key redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from connectors.fivetran.config import parse_configuration
from connectors.fivetran.jsonlog import (
    REDACTED,
    JsonLineFormatter,
    configure_logging,
    json_line_handler,
    register_secret,
)


@pytest.fixture()
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = logging.getLogger("tests.fivetran.jsonlog")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = json_line_handler("sdk_destination", stream)
    logger.addHandler(handler)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_three_keys(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.debug("debug")
    logger.info('quote " and\nnewline')
    logger.warning("careful %s", "now")
    logger.error("broken")
    logger.critical("down")
    assert lines(stream) == [
        {"level": "INFO", "message": "debug", "message-origin": "sdk_destination"},
        {"level": "INFO", "message": 'quote " and\nnewline', "message-origin": "sdk_destination"},
        {"level": "WARNING", "message": "careful now", "message-origin": "sdk_destination"},
        {"level": "SEVERE", "message": "broken", "message-origin": "sdk_destination"},
        {"level": "SEVERE", "message": "down", "message-origin": "sdk_destination"},
    ]
    assert len(stream.getvalue().splitlines()) == 5


def test_keys_of_parsed_configurations_are_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    key = "prod:aware-llama-900|5f1c0ffee5f1c0ffee5f1c0ffee"
    parse_configuration({"url": "https://aware-llama-900.convex.cloud", "key": key})
    logger.info("calling with %s", key)
    logger.warning("secret part alone: 5f1c0ffee5f1c0ffee5f1c0ffee")
    try:
        raise RuntimeError(f"server said the key {key} is wrong")
    except RuntimeError:
        logger.exception("request failed")
    text = stream.getvalue()
    assert "5f1c0ffee" not in text
    messages = [line["message"] for line in lines(stream)]
    assert messages[0] == f"calling with {REDACTED}"
    assert messages[1] == f"secret part alone: {REDACTED}"
    assert messages[2].startswith("request failed\nTraceback")
    assert f"the key {REDACTED} is wrong" in messages[2]


def test_short_values_are_not_treated_as_secrets(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    register_secret("abc")
    logger.info("abc stays readable")
    assert lines(stream)[0]["message"] == "abc stays readable"


def test_source_origin_and_root_configuration() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging("sdk_connector", stream)
        logging.getLogger("some.module").info("hello")
        assert json.loads(stream.getvalue()) == {
            "level": "INFO",
            "message": "hello",
            "message-origin": "sdk_connector",
        }
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def test_unknown_origin_is_refused() -> None:
    with pytest.raises(ValueError, match="message-origin"):
        JsonLineFormatter("sdk_other")  # type: ignore[arg-type]
