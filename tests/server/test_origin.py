"""Host and Origin checks: the policy's rules, and a live server refusing other origins and foreign Host names
on requests and WebSocket handshakes while clients without an Origin (curl, the openai client) pass."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from stepaudio.server.origin import OriginPolicy, normalize_origin, parse_host
from stepaudio.server.settings import ServerSettings


def policy(**settings: Any) -> OriginPolicy:
    return OriginPolicy.from_settings(ServerSettings(**settings))


def test_host_header_parsing() -> None:
    assert parse_host("LocalHost:8000") == parse_host("localhost:8000")
    assert parse_host("[::1]:80") is not None and parse_host("[::1]:80").host == "::1"  # type: ignore[union-attr]
    assert parse_host("example.com.").host == "example.com"  # type: ignore[union-attr]
    for bad in ("", "a@b", "a b", "x:99999", "x:", "http://x", "[::1", "x/y"):
        assert parse_host(bad) is None, bad


def test_origins_are_normalized() -> None:
    assert normalize_origin("HTTP://App.Example:80") == "http://app.example"
    assert normalize_origin("https://app.example:8443") == "https://app.example:8443"
    assert normalize_origin("https://[::1]:443") == "https://[::1]"
    for bad in ("null", "app.example", "http://a/b", "http://user@a", "file://"):
        assert normalize_origin(bad) is None, bad


def test_loopback_bind_answers_its_loopback_names_only() -> None:
    rules = policy(host="127.0.0.1")
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost", None):
        assert rules.host_error(host) is None, host
    for host in ("x", "evil.example:8000", "192.168.1.5:8000", "127.0.0.2", "localhost.evil.example"):
        error = rules.host_error(host)
        assert error is not None and "--allowed-hosts" in error, host
    assert policy(host="127.0.0.1", allowed_hosts=("proxy.example",)).host_error("Proxy.Example:443") is None
    assert policy(allowed_hosts=("*",)).host_error("anything.example") is None


def test_a_named_or_wildcard_bind() -> None:
    named = policy(host="box.lan")
    assert named.host_error("box.lan:8000") is None and named.host_error("localhost:8000") is not None
    wildcard = policy(host="0.0.0.0")
    for host in ("192.168.1.5:8000", "[fe80::1]:8000", "localhost", socket.gethostname()):
        assert wildcard.host_error(host) is None, host
    assert wildcard.host_error("rebound.example:8000") is not None  # a DNS name may be rebound


def test_origin_must_be_the_servers_own_or_allowed() -> None:
    rules = policy()
    assert rules.origin_error(None, "127.0.0.1:8000") is None  # not a browser's cross-origin request
    assert rules.origin_error("http://127.0.0.1:8000", "127.0.0.1:8000") is None
    assert rules.origin_error("http://localhost", "localhost:80") is None
    assert rules.origin_error("https://box.example", "box.example") is None  # TLS ends at a proxy
    for origin in ("http://127.0.0.1:9000", "http://localhost:8000", "http://evil.example", "null", "garbage"):
        error = rules.origin_error(origin, "127.0.0.1:8000")
        assert error is not None and "--cors-origins" in error, origin
    assert "--cors-origins http://127.0.0.1:9000" in (rules.origin_error("http://127.0.0.1:9000", "x") or "")
    allowed = policy(cors_origins=("http://App.example:80",))
    assert allowed.origin_error("http://app.example", "127.0.0.1:8000") is None
    assert allowed.origin_error("http://app.example:8080", "127.0.0.1:8000") is not None
    assert policy(cors_origins=("*",)).origin_error("http://anything.example", "127.0.0.1:8000") is None


def test_live_server_refuses_foreign_hosts_and_origins(tiny_server: Any, tone: Any) -> None:
    url, port = tiny_server.url, tiny_server.port
    rebound = httpx.get(url + "/v1/models", headers={"Host": "rebound.example"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "host_not_allowed"
    assert httpx.get(url + "/", headers={"Host": "x"}).status_code == 400
    assert httpx.get(url + "/v1/models", headers={"Host": f"localhost:{port}"}).status_code == 200
    planted = httpx.post(url + "/v1/voices", data={"name": "planted", "transcript": "t"},
                         files={"file": ("a.wav", tone(1.0))}, headers={"Origin": "http://127.0.0.1:1"})
    assert planted.status_code == 403
    error = planted.json()["error"]
    assert error["code"] == "origin_not_allowed" and error["type"] == "permission_error"
    assert "--cors-origins http://127.0.0.1:1" in error["message"]
    assert all(v["name"] != "planted" for v in httpx.get(url + "/v1/voices").json()["data"])
    own = httpx.post(url + "/v1/audio/speech", json={"input": "hi", "voice": "tone"}, headers={"Origin": url})
    assert own.status_code == 200
    assert tiny_server.client().models.list().data  # the openai client sends no Origin


def test_live_server_refuses_foreign_websocket_handshakes(server_factory: Any) -> None:
    pytest.importorskip("websockets")
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from stepaudio.server.realtime_ws import realtime_mount

    server = server_factory(ServerSettings(cors_origins=("http://app.example",)), mount_realtime=realtime_mount())
    ws_url = f"ws://127.0.0.1:{server.port}/v1/realtime"
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}):
        with pytest.raises(InvalidStatus) as info, connect(ws_url, additional_headers=headers, open_timeout=10):
            pass
        assert info.value.response.status_code == 403, headers
    loopback = socket.create_connection(("127.0.0.1", server.port))  # reached under another name: rebinding
    with pytest.raises(InvalidStatus) as info, connect(f"ws://rebound.example:{server.port}/v1/realtime",
                                                       sock=loopback, open_timeout=10):
        pass
    assert info.value.response.status_code == 403
    for headers in ({}, {"Origin": server.url}, {"Origin": "http://app.example"}):
        with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
            assert '"session.created"' in ws.recv(timeout=10), headers
