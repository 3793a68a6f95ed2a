"""Configuration parsing shared by both Fivetran connectors: every vector of fivetran-source.md §2.2."""

from __future__ import annotations

import pytest

from connectors.fivetran.config import (
    INVALID_URL,
    MISSING_KEY,
    MISSING_URL,
    NOT_A_ROOT_URL,
    URL_WITHOUT_HOST,
    ConfigurationError,
    ConnectorConfig,
    parse_configuration,
)

KEY = "prod:aware-llama-900|0123456789abcdef"

SPEC_VECTORS = [
    ("https://aware-llama-900.convex.cloud", "https://aware-llama-900.convex.cloud/"),
    ("https://aware-llama-900.convex.cloud/", "https://aware-llama-900.convex.cloud/"),
    ("http://localhost", "http://localhost/"),
]
SPEC_ERRORS = [
    ("aware lalama convex", INVALID_URL),
    ("/", INVALID_URL),
    ("https://aware-llama-900.convex.cloud/api/", NOT_A_ROOT_URL),
    ("https://aware-llama-900.convex.cloud?abc", NOT_A_ROOT_URL),
    ("https://aware-llama-900.convex.cloud?abc=def", NOT_A_ROOT_URL),
    ("https://root:hunter2@aware-llama-900.convex.cloud", NOT_A_ROOT_URL),
    ("https://aware-llama-900.convex.cloud/#abc", NOT_A_ROOT_URL),
    ("ftp://aware-llama-900.convex.cloud/", NOT_A_ROOT_URL),
]
# WHATWG behaviour beyond the spec's table (what the Rust `url` crate does with these inputs).
MORE_VECTORS = [
    ("HTTPS://Aware-Llama-900.Convex.Cloud", "https://aware-llama-900.convex.cloud/"),
    ("  https://x.convex.cloud/  ", "https://x.convex.cloud/"),
    ("https://x.convex.cloud:443", "https://x.convex.cloud/"),
    ("http://127.0.0.1:3210", "http://127.0.0.1:3210/"),
    ("http://[::1]:3210/", "http://[::1]:3210/"),
    ("https://x.convex.cloud/./", "https://x.convex.cloud/"),
    ("https://x.convex.cloud/api/..", "https://x.convex.cloud/"),
    ("https:\\\\x.convex.cloud\\", "https://x.convex.cloud/"),
    ("https://@x.convex.cloud", "https://x.convex.cloud/"),
]
MORE_ERRORS = [
    ("", INVALID_URL),
    ("x.convex.cloud", INVALID_URL),
    ("//x.convex.cloud/", INVALID_URL),
    ("./api", INVALID_URL),
    ("https://", INVALID_URL),
    ("https://a b.convex.cloud", INVALID_URL),
    ("https://x.convex.cloud:99999", INVALID_URL),
    ("https://x.convex.cloud:port", INVALID_URL),
    ("http://[::1", INVALID_URL),
    ("mailto:someone@example.com", URL_WITHOUT_HOST),
    ("file:///etc/passwd", URL_WITHOUT_HOST),
    ("https://x.convex.cloud/?", NOT_A_ROOT_URL),
    ("https://x.convex.cloud/#", NOT_A_ROOT_URL),
    ("https://user@x.convex.cloud", NOT_A_ROOT_URL),
    ("wss://x.convex.cloud/", NOT_A_ROOT_URL),
    ("custom://x.convex.cloud/", NOT_A_ROOT_URL),
]


@pytest.mark.parametrize(("url", "normalised"), SPEC_VECTORS + MORE_VECTORS)
def test_accepted_urls_are_normalised_with_a_trailing_slash(url: str, normalised: str) -> None:
    config = parse_configuration({"url": url, "key": KEY})
    assert config == ConnectorConfig(url=normalised, key=KEY)
    assert config.endpoint("list_snapshot") == normalised + "api/list_snapshot"


@pytest.mark.parametrize(("url", "text"), SPEC_ERRORS + MORE_ERRORS)
def test_rejected_urls_have_the_exact_text(url: str, text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_configuration({"url": url, "key": KEY})
    assert str(caught.value) == text


def test_missing_url() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_configuration({"key": KEY})
    assert str(caught.value) == MISSING_URL == "Missing url"


def test_missing_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_configuration({"url": "https://x.convex.cloud"})
    assert str(caught.value) == MISSING_KEY == "Missing key"


def test_first_failure_wins() -> None:
    """A bad URL is reported before a missing key, a missing URL before everything."""
    with pytest.raises(ConfigurationError, match=r"^Missing url$"):
        parse_configuration({})
    with pytest.raises(ConfigurationError, match=r"^Invalid url \(must be an URL\)$"):
        parse_configuration({"url": "nope"})
    with pytest.raises(ConfigurationError, match=r"^Invalid deploy URL: must be a root URL\.$"):
        parse_configuration({"url": "https://x.convex.cloud/api"})


def test_key_is_not_validated_and_not_in_repr() -> None:
    config = parse_configuration({"url": "http://localhost", "key": "anything at all"})
    assert config.key == "anything at all"
    assert "anything" not in repr(config)
