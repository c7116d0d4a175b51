"""Which web pages and host names may reach the server: the defence against other sites and DNS rebinding.

A server without an API key on loopback is reachable by every page the user opens: a cross-origin multipart
POST needs no CORS preflight, and WebSocket handshakes are never preflighted, so CORS alone protects nothing.
A request that carries `Origin` (every browser POST and WebSocket handshake does) must therefore come from
the server's own origin or one named in `cors_origins`. Its `Host` must name the server (the bound address,
the loopback names for a loopback bind, or `allowed_hosts`), because a DNS-rebinding page reaches it under
the attacker's own host name, as a same-origin request. Requests without `Origin` (curl, the OpenAI SDKs,
other servers) pass the origin check.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from stepaudio.server.settings import ServerSettings

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::(?P<port>\d{1,5}))?$")
_ORIGIN = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[^/?#@\s]+)$")


@dataclass(frozen=True)
class HostPort:
    host: str  # lowercase, IPv6 without brackets
    port: int | None


def parse_host(value: str) -> HostPort | None:
    """`name`, `name:port`, `1.2.3.4:port` or `[::1]:port` from a Host header; None when malformed."""
    match = _HOST.match(value.strip().lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    return HostPort(match["v6"] or match["name"].rstrip("."), port)


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]` lowercased, without the scheme's default port; None when not such an origin."""
    match = _ORIGIN.match(origin.strip().lower())
    if match is None:
        return None
    address = parse_host(match["host"])
    if address is None:
        return None
    host = f"[{address.host}]" if ":" in address.host else address.host
    default = DEFAULT_PORTS.get(match["scheme"])
    port = "" if address.port in (None, default) else f":{address.port}"
    return f"{match['scheme']}://{host}{port}"


@dataclass(frozen=True)
class OriginPolicy:
    """The host names and browser origins the server answers; `from_settings` builds it."""

    hosts: frozenset[str]
    any_ip_host: bool  # a wildcard bind answers on every address: IP literals cannot be rebound
    any_host: bool  # `allowed_hosts` holds "*"
    origins: frozenset[str]  # normalized, besides the server's own origin
    any_origin: bool  # `cors_origins` holds "*"

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> OriginPolicy:
        bound = settings.host.strip().strip("[]").lower()
        hosts = {bound, *(h.strip().strip("[]").lower() for h in settings.allowed_hosts)}
        wildcard = bound in WILDCARD_BINDS
        if wildcard or is_loopback(bound):
            hosts |= LOOPBACK_NAMES
        if wildcard:
            hosts.add(socket.gethostname().lower())
        origins = {o for o in (normalize_origin(x) for x in settings.cors_origins if x != "*") if o}
        return cls(hosts=frozenset(hosts - {""}), any_ip_host=wildcard, any_host="*" in settings.allowed_hosts,
                   origins=frozenset(origins), any_origin="*" in settings.cors_origins)

    def host_error(self, host: str | None) -> str | None:
        """Why a request with this Host header is refused, or None. A missing header (HTTP/1.0) passes:
        browsers always send one."""
        if host is None or self.any_host:
            return None
        address = parse_host(host)
        if address is not None and (address.host in self.hosts or (self.any_ip_host and _is_ip(address.host))):
            return None
        shown = address.host if address is not None else "NAME"
        return (f"the Host header {host[:100]!r} does not name this server (a page reaching a local server under "
                f"its own name is a DNS-rebinding attack); to serve this name, start the server with "
                f"--allowed-hosts {shown}")

    def origin_error(self, origin: str | None, host: str | None) -> str | None:
        """Why a browser request from `origin` is refused, or None: no Origin, the server's own origin (the
        Origin's host and port are those the request was sent to), or an allowed one."""
        if origin is None or self.any_origin:
            return None
        normalized = normalize_origin(origin)
        if normalized is not None and (normalized in self.origins or _same_origin(normalized, host)):
            return None
        return (f"requests from the web page at {origin[:200]!r} are refused: only this server's own page may "
                f"call it from a browser; to allow that origin, start the server with --cors-origins "
                f"{normalized or 'ORIGIN'}")


def _same_origin(origin: str, host: str | None) -> bool:
    if host is None:
        return False
    scheme, _, rest = origin.partition("://")
    own, target = parse_host(rest), parse_host(host)
    if own is None or target is None:
        return False
    default = DEFAULT_PORTS.get(scheme)
    return own.host == target.host and (own.port or default) == (target.port or default)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
