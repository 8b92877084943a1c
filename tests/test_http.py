"""HTTP as users expect it, against real servers on 127.0.0.1: redirects, a real proxy
(tinyproxy), malformed URLs and ports, a server that is down."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from xview2_ingest import download
from xview2_ingest.catalog import Catalog
from xview2_ingest.cli import main
from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.errors import LinkError, ServerError
from xview2_ingest.events import Event
from xview2_ingest.links import parse_links_text
from xview2_ingest.transfer.http import MAX_REDIRECTS, HttpClient, RetryPolicy
from xview2_ingest.transfer.proxies import ProxySettings

MiB = 1 << 20
NAME = "file.tar.gz"
FAST = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, connect_timeout=2.0)


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without proxy settings, whatever the machine has."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    root = tmp_path_factory.mktemp("http-src")
    data = b"\x1f\x8b" + os.urandom(3 * MiB + 777)
    (root / NAME).write_bytes(data)
    return root, data


def catalog(data: bytes) -> Catalog:
    return Catalog({}).with_overrides(
        {NAME: {"size": len(data), "sha1": hashlib.sha1(data).hexdigest()}}
    )


def get(url: str, dest: Path, data: bytes, events: list[Event] | None = None):  # type: ignore[no-untyped-def]
    report = download(
        [url],
        dest,
        catalog=catalog(data),
        retry=FAST,
        part_size=1 * MiB,
        connections=2,
        progress=events.append if events is not None else None,
    )
    return report.files[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- connections ---------------------------------------------------------------------------


def test_connections_are_opened_while_the_probe_is_on_its_way(payload) -> None:  # type: ignore[no-untyped-def]
    """The lanes start once the probe has answered; the connections they will use are
    opened meanwhile, so a lane's first request waits one round trip, not two."""
    root, data = payload
    with SignedLinkServer(root) as srv:
        (link,) = parse_links_text(srv.url_for(NAME))
        client = HttpClient(8, FAST)
        client.warm(link, 3)
        deadline = time.monotonic() + 10
        while srv.connections < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # every warmed connection is back in the pool
        opened = srv.connections
        remote = client.probe(link)
        assert srv.connections == opened == 3, "the probe used a warmed connection"
        into = bytearray(MiB)
        client.fetch(link, remote, 0, memoryview(into), lambda n: None)
    assert bytes(into) == data[:MiB]


# -- redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("hops", [1, MAX_REDIRECTS])
def test_redirects_are_followed(payload, tmp_path: Path, hops: int) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    with SignedLinkServer(root, faults=Faults(redirects=hops)) as srv:
        result = get(srv.url_for(NAME), tmp_path / "d", data)
        served = srv.faults.requests
    assert result.status == "verified", result.error
    assert (tmp_path / "d" / NAME).read_bytes() == data
    assert served >= 1  # the file itself was served after the redirects


def test_more_than_five_redirects_fail_clearly(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    with SignedLinkServer(root, faults=Faults(redirects=MAX_REDIRECTS + 1)) as srv:
        result = get(srv.url_for(NAME), tmp_path / "d", data)
        assert srv.faults.requests == 0  # the file was never reached
    assert result.status == "failed"
    assert isinstance(result.error, LinkError)
    assert f"more than {MAX_REDIRECTS} redirects" in str(result.error)
    assert "Signature" not in str(result.error)
    assert not (tmp_path / "d" / NAME).exists()


def test_redirect_to_another_server_with_queries_redacted(  # type: ignore[no-untyped-def]
    payload, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, data = payload
    events: list[Event] = []
    caplog.set_level(logging.DEBUG)
    with SignedLinkServer(root) as target:
        with SignedLinkServer(root, faults=Faults(redirects=2, redirect_to=target.base_url)) as srv:
            url = srv.url_for(NAME)
            result = get(url, tmp_path / "d", data, events)
            assert srv.faults.requests == 0  # the first server only redirected
        assert target.faults.requests >= 2  # probe and ranges came from the second one
    assert result.status == "verified", result.error
    assert (tmp_path / "d" / NAME).read_bytes() == data
    signature = url.split("Signature=")[1].split("&")[0]
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"redirect to {target.base_url}/{NAME}" in m for m in messages)
    for text in messages + [e.detail for e in events]:
        assert "Signature" not in text and signature not in text


# -- proxies -----------------------------------------------------------------------------


@pytest.fixture()
def tinyproxy(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real forward proxy on 127.0.0.1 (Debian's tinyproxy), its log file."""
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy)")
    port = free_port()
    log_path = tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(
        f"Listen 127.0.0.1\nPort {port}\nAllow 127.0.0.1\nTimeout 30\nMaxClients 50\n"
        f'LogFile "{log_path}"\nLogLevel Info\n'
    )
    proc = subprocess.Popen(
        [binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tinyproxy did not start; its log: {log_path.read_text()}")
                time.sleep(0.05)
        yield port, log_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def proxied_requests(log_path: Path, server: SignedLinkServer) -> int:
    return log_path.read_text().count(f"GET {server.base_url}/{NAME}")


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_requests_go_through_the_proxy(  # type: ignore[no-untyped-def]
    payload,
    tmp_path: Path,
    tinyproxy,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    root, data = payload
    port, log_path = tinyproxy
    monkeypatch.setenv(
        variable, f"127.0.0.1:{port}" if variable == "ALL_PROXY" else f"http://127.0.0.1:{port}"
    )
    with SignedLinkServer(root) as srv:
        result = get(srv.url_for(NAME), tmp_path / "d", data)
        seen = proxied_requests(log_path, srv)
    assert result.status == "verified", result.error
    assert seen >= 2  # the probe and the ranges all went through the proxy
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"through the proxy http://127.0.0.1:{port}" in m for m in messages)
    assert not any("Signature" in m for m in messages)  # proxied request lines are absolute


def test_no_proxy_bypasses_the_proxy(  # type: ignore[no-untyped-def]
    payload, tmp_path: Path, tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = payload
    port, log_path = tinyproxy
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    with SignedLinkServer(root) as srv:
        result = get(srv.url_for(NAME), tmp_path / "d", data)
        seen = proxied_requests(log_path, srv)
    assert result.status == "verified", result.error
    assert seen == 0


def test_a_proxy_that_is_down_is_named(  # type: ignore[no-untyped-def]
    payload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = payload
    port = free_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://user:hunter2@127.0.0.1:{port}")
    with SignedLinkServer(root) as srv:
        result = get(srv.url_for(NAME), tmp_path / "d", data)
        assert srv.hits == 0
    assert isinstance(result.error, ServerError)
    message = str(result.error)
    assert f"proxy 127.0.0.1:{port} (from HTTP_PROXY): connection refused" in message
    assert "hunter2" not in message


def test_proxy_settings_follow_curl() -> None:
    env = {
        "https_proxy": "http://p:1",
        "HTTP_PROXY": "p:2",
        "no_proxy": ".example.org, 10.0.0.0/8,[::1]:8080,host:81",
    }
    settings = ProxySettings(env)

    def proxy_of(url: str) -> str | None:
        proxy = settings.for_url(url)
        return proxy.url if proxy else None

    assert proxy_of("https://q/x") == proxy_of("https://a.example.net/x") == "http://p:1"
    assert proxy_of("http://q/x") == "http://p:2"  # no scheme: http://
    for direct in (
        "https://example.org/x",
        "https://cdn.example.org/x",
        "http://10.1.2.3/x",
        "http://[::1]:8080/x",
        "http://host:81/x",
    ):
        assert proxy_of(direct) is None, direct
    assert proxy_of("http://[::1]:8081/x") == proxy_of("http://host:82/x") == "http://p:2"
    cgi = ProxySettings({"HTTP_PROXY": "http://p:2", "REQUEST_METHOD": "GET"})
    assert cgi.for_url("http://q/x") is None
    assert ProxySettings({"ALL_PROXY": "http://p:3", "NO_PROXY": "*"}).for_url("http://q/") is None


@pytest.mark.parametrize(
    "value, message",
    [
        ("socks5://127.0.0.1:1080", "SOCKS proxies are not supported"),
        ("http://p:99999", "malformed"),
    ],
)
def test_unusable_proxy_settings_are_usage_errors(  # type: ignore[no-untyped-def]
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, value: str, message: str
) -> None:
    monkeypatch.setenv("ALL_PROXY", value)
    code = main(["download", "http://127.0.0.1:9/x.tar.gz", "--dest", str(tmp_path / "d"), "-q"])
    assert code == 2
    assert message in capsys.readouterr().err


# -- malformed links, servers that are down ------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x.tar.gz?Signature=secret1",
        "http://127.0.0.1:99999/x.tar.gz?Signature=secret1",
        "http://127.0.0.1:0/x.tar.gz?Signature=secret1",
        "http://127.0.0.1:port/x.tar.gz?Signature=secret1",
        "http://:80/x.tar.gz?Signature=secret1",
    ],
)
def test_malformed_urls_and_ports_are_usage_errors(url: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["download", url, "--dest", str(tmp_path / "d"), "--no-prompt"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "malformed URL" in err and "argument 1" in err
    assert "Traceback" not in err and "secret1" not in err
    assert not (tmp_path / "d").exists()


def test_a_server_that_is_down_is_named_quickly(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The command's own retry policy: the probe gives up within its 15 s budget."""
    assert RetryPolicy().connect_budget == 15.0
    port = free_port()
    url = f"http://127.0.0.1:{port}/x.tar.gz?Expires=9999999999&Signature=secret2"
    started = time.monotonic()
    code = main(["download", url, "--dest", str(tmp_path / "d"), "--no-prompt", "-q"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in err
    assert "secret2" not in err
    assert elapsed < 20, f"gave up after {elapsed:.1f}s"
