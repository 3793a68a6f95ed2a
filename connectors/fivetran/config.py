"""The ``url``/``key`` configuration both Fivetran connectors receive (fivetran-source.md §2.2).

Checks run in the contract's order and the first failure wins, with its exact text. URL parsing follows the
WHATWG rules Convex's Rust connectors get from the ``url`` crate, as far as they matter here: a scheme is
required (so scheme-less and relative inputs fail), special schemes ignore extra slashes and treat ``\\`` as
``/``, hosts may not contain forbidden code points, ports are decimal and at most 65535, and ``.``/``..``
path segments are resolved before the path is compared with ``/``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from connectors.fivetran.jsonlog import register_secret

URL_KEY = "url"
KEY_KEY = "key"

MISSING_URL = "Missing url"
INVALID_URL = "Invalid url (must be an URL)"
URL_WITHOUT_HOST = "Invalid deploy URL: must contain a host."
NOT_A_ROOT_URL = "Invalid deploy URL: must be a root URL."
MISSING_KEY = "Missing key"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_SPECIAL_DEFAULT_PORTS: dict[str, int | None] = {
    "http": 80,
    "https": 443,
    "ws": 80,
    "wss": 443,
    "ftp": 21,
    "file": None,
}
# WHATWG "forbidden host code points" (plus "%", which is forbidden after percent-decoding).
_FORBIDDEN_HOST = frozenset(" \t\n\r#%/:<>?@[\\]^|\x00") | frozenset(chr(c) for c in range(0x20)) | {"\x7f"}
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


class ConfigurationError(ValueError):
    """The configuration map is unusable; ``str(error)`` is the exact text the contract gives for it."""


@dataclass(frozen=True)
class ConnectorConfig:
    """A connector's validated configuration; ``url`` ends with a slash (``https://x.convex.cloud/``)."""

    url: str
    key: str = field(repr=False)

    def endpoint(self, name: str) -> str:
        """The URL of ``/api/<name>`` on the deployment."""
        return f"{self.url}api/{name}"


@dataclass(frozen=True)
class _ParsedUrl:
    scheme: str
    username: str
    password: str
    host: str | None
    port: int | None
    path: str
    query: str | None
    fragment: str | None


class _UrlSyntaxError(ValueError):
    """The text does not parse as an absolute URL (reported with the contract's `Invalid url` text)."""


def parse_configuration(configuration: Mapping[str, str]) -> ConnectorConfig:
    """Validate the ``url`` and ``key`` entries of a Fivetran configuration map.

    Raises ConfigurationError with the contract's text. The key is registered with the log redaction filter
    before anything else can log it.
    """
    if URL_KEY not in configuration:
        raise ConfigurationError(MISSING_URL)
    try:
        url = _parse_url(configuration[URL_KEY])
    except _UrlSyntaxError:
        raise ConfigurationError(INVALID_URL) from None
    if not url.host:
        raise ConfigurationError(URL_WITHOUT_HOST)
    if (
        url.path != "/"
        or url.query is not None
        or url.username
        or url.password
        or url.fragment is not None
        or url.scheme not in ("http", "https")
    ):
        raise ConfigurationError(NOT_A_ROOT_URL)
    if KEY_KEY not in configuration:
        raise ConfigurationError(MISSING_KEY)
    key = configuration[KEY_KEY]
    register_secret(key)
    port = "" if url.port is None else f":{url.port}"
    return ConnectorConfig(url=f"{url.scheme}://{url.host}{port}/", key=key)


def _parse_url(text: str) -> _ParsedUrl:
    # WHATWG pre-processing: trim C0 controls and spaces, drop tabs and newlines anywhere.
    text = text.strip(_C0_OR_SPACE)
    text = text.replace("\t", "").replace("\n", "").replace("\r", "")
    match = _SCHEME.match(text)
    if match is None:
        raise _UrlSyntaxError("no scheme: a relative reference, not an absolute URL")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    special = scheme in _SPECIAL_DEFAULT_PORTS
    if special:
        rest = rest.replace("\\", "/")
    rest, fragment = _split_off(rest, "#")
    rest, query = _split_off(rest, "?")
    if special and scheme != "file":
        authority_and_path = rest.lstrip("/")
    elif rest.startswith("//"):
        authority_and_path = rest[2:]
    else:
        # An opaque or host-less path ("mailto:x", "foo:/bar"): parses, but has no host.
        return _ParsedUrl(scheme, "", "", None, None, rest, query, fragment)
    slash = authority_and_path.find("/")
    authority = authority_and_path if slash < 0 else authority_and_path[:slash]
    path = "" if slash < 0 else authority_and_path[slash:]
    userinfo, at, host_port = authority.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    host, port = _parse_host_port(host_port, scheme)
    if special and scheme != "file" and not host:
        raise _UrlSyntaxError("a special scheme needs a host")
    return _ParsedUrl(scheme, username, password, host or None, port, _resolve_dots(path), query, fragment)


def _split_off(text: str, separator: str) -> tuple[str, str | None]:
    head, found, tail = text.partition(separator)
    return head, (tail if found else None)


def _parse_host_port(host_port: str, scheme: str) -> tuple[str, int | None]:
    if host_port.startswith("["):
        end = host_port.find("]")
        if end < 0:
            raise _UrlSyntaxError("unterminated IPv6 address")
        try:
            host = f"[{ipaddress.IPv6Address(host_port[1:end]).compressed}]"
        except ValueError:
            raise _UrlSyntaxError("invalid IPv6 address") from None
        after = host_port[end + 1 :]
        if after and not after.startswith(":"):
            raise _UrlSyntaxError("junk after an IPv6 address")
        port_text = after[1:] if after else None
    else:
        host_text, colon, port_text_or_empty = host_port.partition(":")
        port_text = port_text_or_empty if colon else None
        host = _parse_domain(host_text)
    port: int | None = None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            raise _UrlSyntaxError("invalid port")
        port = int(port_text)
        if port == _SPECIAL_DEFAULT_PORTS.get(scheme):
            port = None
    return host, port


def _parse_domain(text: str) -> str:
    if not text:
        return ""
    try:
        decoded = unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise _UrlSyntaxError("percent-encoded host is not UTF-8") from None
    if any(ch in _FORBIDDEN_HOST for ch in decoded):
        raise _UrlSyntaxError("forbidden code point in host")
    if decoded.isascii():
        return decoded.lower()
    try:
        return decoded.encode("idna").decode("ascii")
    except UnicodeError:
        raise _UrlSyntaxError("host is not a valid internationalised domain name") from None


def _resolve_dots(path: str) -> str:
    """WHATWG path parsing of a special URL's path: "." and ".." segments (also percent-encoded)."""
    if not path:
        return "/"
    segments = path[1:].split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
        elif lowered in (".", "%2e"):
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)
