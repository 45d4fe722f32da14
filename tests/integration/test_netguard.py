"""netguard: which addresses are public, URL checks, and the send-time guard against DNS rebinding.

DNS is faked by replacing the running loop's getaddrinfo for made-up names (other names, and the
IP literals the connection layer looks up, go to the real resolver); servers listen on loopback.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.guarded_http import GuardedTransport, UnsafeConnection, guarded_client
from podium.netguard import UnsafeURL, allow_private_from_env, check_url, is_public, resolve_public

NOT_PUBLIC = [
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.1.1",
    "100.100.100.200",
    "224.0.0.1",
    "ff02::1",
    "ff0e::1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "fec0::1",
    "0.0.0.0",
    "::",
    "255.255.255.255",
    "240.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "2002:a9fe:a9fe::",
    "::7f00:1",
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::",
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "value, expected",
    [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)],
)
def test_allow_private_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("PODIUM_WEBHOOK_ALLOW_PRIVATE", value)
    assert allow_private_from_env() is expected


def test_allow_private_from_env_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODIUM_WEBHOOK_ALLOW_PRIVATE", raising=False)
    assert allow_private_from_env() is False


# -- fake DNS -----------------------------------------------------------------------------------


class FakeDNS:
    """Answers for made-up names: each lookup takes the next answer (the last one repeats); an
    answer of None fails the lookup. Counts lookups per name."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.answers: dict[str, list[list[str] | None]] = {}
        self.lookups: dict[str, int] = {}

    def set(self, name: str, *answers: list[str] | None) -> None:
        self.answers[name] = list(answers)

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return await self.real(host, port, *args, **kwargs)
        self.lookups[name] = self.lookups.get(name, 0) + 1
        queue = self.answers[name]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos = []
        for address in answer:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return infos


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    loop = asyncio.get_running_loop()
    fake = FakeDNS(loop.getaddrinfo)
    monkeypatch.setattr(loop, "getaddrinfo", fake.getaddrinfo)
    return fake


# -- resolve_public and check_url ---------------------------------------------------------------


async def test_resolve_returns_every_address_once(dns: FakeDNS) -> None:
    dns.set("multi.test", ["93.184.216.34", "2606:4700:4700::1111", "93.184.216.34"])
    got = await resolve_public("multi.test", 443, allow_private=False)
    assert got == ["93.184.216.34", "2606:4700:4700::1111"]


async def test_literals_skip_dns(dns: FakeDNS) -> None:
    assert await resolve_public("8.8.8.8", 80, allow_private=False) == ["8.8.8.8"]
    assert await resolve_public("[2606:4700:4700::1111]", 80, allow_private=False) == ["2606:4700:4700::1111"]
    assert dns.lookups == {}


async def test_one_private_answer_is_enough_to_refuse(dns: FakeDNS) -> None:
    dns.set("mixed.test", ["93.184.216.34", "10.1.2.3"])
    with pytest.raises(UnsafeURL, match=r"mixed\.test resolves to 10\.1\.2\.3, a private address"):
        await resolve_public("mixed.test", 80, allow_private=False)
    assert await resolve_public("mixed.test", 80, allow_private=True) == ["93.184.216.34", "10.1.2.3"]


async def test_metadata_name_message(dns: FakeDNS) -> None:
    dns.set("metadata.google.internal", ["169.254.169.254"])
    with pytest.raises(UnsafeURL) as info:
        await check_url("http://metadata.google.internal/computeMetadata/v1/", allow_private=False)
    assert str(info.value) == (
        "webhook host metadata.google.internal resolves to 169.254.169.254, a link-local address;"
        " set PODIUM_WEBHOOK_ALLOW_PRIVATE=1 to allow private targets"
    )


async def test_unresolvable_host(dns: FakeDNS) -> None:
    dns.set("nowhere.test", None)
    with pytest.raises(UnsafeURL, match=r"nowhere\.test could not be resolved"):
        await check_url("https://nowhere.test/hook", allow_private=False)
    with pytest.raises(UnsafeURL, match="could not be resolved"):
        await check_url("https://nowhere.test/hook", allow_private=True)


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.com/x", "scheme must be http or https, not 'ftp'"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme must be http or https"),
        ("example.com/hook", "scheme must be http or https"),
        ("http:///hook", "has no host"),
        ("http://example.com:port/", "not a valid URL"),
    ],
)
async def test_check_url_refuses_malformed(url: str, message: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(UnsafeURL, match=message):
            await check_url(url, allow_private=allow_private)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://localhost/hook", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.8:8080/", "10.0.0.8 is a private address"),
        ("https://[::ffff:127.0.0.1]/", "a loopback address"),
        ("http://0.0.0.0:9000/", "an unspecified address"),
    ],
)
async def test_check_url_refuses_private(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL) as info:
        await check_url(url, allow_private=False)
    assert reason in str(info.value)
    assert "PODIUM_WEBHOOK_ALLOW_PRIVATE=1" in str(info.value)


async def test_check_url_allow_private() -> None:
    await check_url("http://localhost:8000/hook", allow_private=True)
    await check_url("http://[::1]/", allow_private=True)
    await check_url("http://169.254.169.254/latest/meta-data", allow_private=True)


async def test_check_url_accepts_public(dns: FakeDNS) -> None:
    dns.set("hooks.example.test", ["93.184.216.34", "2606:4700:4700::1111"])
    await check_url("https://hooks.example.test/podium?x=1", allow_private=False)
    await check_url("http://8.8.8.8:8080/", allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:s3cret@127.0.0.1/hook",
        "http://alice:s3cret@localhost:8000/hook",
        "http://alice:s3cret@nowhere.test/hook",
        "http://alice:s3cret@example.com:port/",
        "ftp://alice:s3cret@example.com/",
    ],
)
async def test_userinfo_never_in_messages(dns: FakeDNS, url: str) -> None:
    dns.set("nowhere.test", None)
    with pytest.raises(UnsafeURL) as info:
        await check_url(url, allow_private=False)
    for text in (str(info.value), repr(info.value)):
        assert "s3cret" not in text and "alice" not in text


# -- GuardedTransport with a stand-in connection layer ------------------------------------------


class Recorder:
    """Stands in for the transport below the guard: records what it was asked to send."""

    def __init__(self, respond: Any = None) -> None:
        self.seen: list[httpx.Request] = []
        self.snapshots: list[tuple[str, str, str | None]] = []
        self.respond = respond

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.snapshots.append((str(request.url), request.headers["host"], request.extensions.get("sni_hostname")))
        self.seen.append(request)
        if self.respond is not None:
            result: httpx.Response = self.respond(request)
            return result
        return httpx.Response(200, text="ok")


def stand_in(guard: GuardedTransport, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "_http", httpx.MockTransport(recorder.handler))
    monkeypatch.setattr(guard, "_https", httpx.MockTransport(recorder.handler))


async def test_sends_to_the_checked_address_keeping_the_name(dns: FakeDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    dns.set("hooks.example.test", ["93.184.216.34"])
    dns.set("v6.example.test", ["2606:4700:4700::1111"])
    guard = GuardedTransport(allow_private=False)
    recorder = Recorder()
    stand_in(guard, recorder, monkeypatch)
    async with httpx.AsyncClient(transport=guard) as client:
        r = await client.post("https://hooks.example.test/podium?a=1", content=b"{}")
        r6 = await client.post("http://v6.example.test:8080/x", content=b"{}")
    assert recorder.snapshots == [
        ("https://93.184.216.34/podium?a=1", "hooks.example.test", "hooks.example.test"),
        ("http://[2606:4700:4700::1111]:8080/x", "v6.example.test:8080", None),
    ]
    # The caller's view of the request is the URL it asked for.
    assert str(r.request.url) == "https://hooks.example.test/podium?a=1"
    assert "sni_hostname" not in r.request.extensions
    assert str(r6.request.url) == "http://v6.example.test:8080/x"


async def test_dns_rebinding_is_refused_at_send_time(dns: FakeDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    """1. The name resolves to a public address when the URL is checked. 2. It resolves to
    127.0.0.1 when the webhook is sent. Result: refused, nothing is sent."""
    dns.set("rebind.test", ["93.184.216.34"], ["127.0.0.1"])
    await check_url("http://rebind.test/hook", allow_private=False)
    guard = GuardedTransport(allow_private=False)
    recorder = Recorder()
    stand_in(guard, recorder, monkeypatch)
    async with httpx.AsyncClient(transport=guard) as client:
        with pytest.raises(UnsafeConnection) as info:
            await client.post("http://rebind.test/hook", content=b"{}")
    assert dns.lookups["rebind.test"] == 2
    assert recorder.seen == []
    assert isinstance(info.value, UnsafeURL) and isinstance(info.value, httpx.TransportError)
    assert info.value.request.url.host == "rebind.test"
    assert "rebind.test resolves to 127.0.0.1, a loopback address" in str(info.value)


async def test_redirect_to_private_address_is_refused(dns: FakeDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    dns.set("hooks.example.test", ["93.184.216.34"])
    guard = GuardedTransport(allow_private=False)
    recorder = Recorder(
        lambda request: httpx.Response(307, headers={"location": "http://169.254.169.254/latest/meta-data"})
    )
    stand_in(guard, recorder, monkeypatch)
    async with httpx.AsyncClient(transport=guard, follow_redirects=True) as client:
        with pytest.raises(UnsafeConnection, match="169.254.169.254 is a link-local address"):
            await client.post("https://hooks.example.test/hook", content=b"{}")
    assert len(recorder.seen) == 1


async def test_redirect_does_not_carry_the_tls_name(dns: FakeDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    dns.set("a.example.test", ["93.184.216.34"])
    dns.set("b.example.test", ["93.184.216.35"])
    guard = GuardedTransport(allow_private=False)
    recorder = Recorder(
        lambda request: (
            httpx.Response(302, headers={"location": "https://b.example.test/"})
            if request.headers["host"] == "a.example.test"
            else httpx.Response(200)
        )
    )
    stand_in(guard, recorder, monkeypatch)
    async with httpx.AsyncClient(transport=guard, follow_redirects=True) as client:
        await client.get("https://a.example.test/")
    assert [s[2] for s in recorder.snapshots] == ["a.example.test", "b.example.test"]


async def test_tries_the_next_checked_address_when_one_refuses(dns: FakeDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    dns.set("dual.test", ["2606:4700:4700::1111", "93.184.216.34"])

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.host == "2606:4700:4700::1111":
            raise httpx.ConnectError("network unreachable", request=request)
        return httpx.Response(204)

    guard = GuardedTransport(allow_private=False)
    recorder = Recorder(respond)
    stand_in(guard, recorder, monkeypatch)
    async with httpx.AsyncClient(transport=guard) as client:
        r = await client.post("http://dual.test/hook", content=b"{}")
    assert r.status_code == 204
    assert [s[0] for s in recorder.snapshots] == ["http://[2606:4700:4700::1111]/hook", "http://93.184.216.34/hook"]


async def test_guard_refuses_other_schemes() -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(allow_private=True)) as client:
        with pytest.raises(UnsafeConnection, match="scheme must be http or https"):
            await client.get("ftp://127.0.0.1/")


# -- a real loopback server ---------------------------------------------------------------------


class Server:
    """A stdlib HTTP(S) server on 127.0.0.1 that records each request's Host header and path."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.server_names: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse would show

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.seen.append((self.headers["Host"], self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


async def test_loopback_server_allowed_when_private_allowed(dns: FakeDNS, server: Server) -> None:
    """The name does not exist outside the fake resolver, so reaching the server at all shows the
    connection went to the checked address; the server still sees the name."""
    dns.set("receiver.test", ["127.0.0.1"])
    async with guarded_client(allow_private=True, timeout=5) as client:
        r = await client.post(f"http://receiver.test:{server.port}/hook?x=1", content=b"{}")
        r2 = await client.post(f"http://localhost:{server.port}/again", content=b"[]")
    assert r.status_code == 200 and r.text == "ok" and r2.status_code == 200
    assert server.seen == [
        (f"receiver.test:{server.port}", "/hook?x=1", b"{}"),
        (f"localhost:{server.port}", "/again", b"[]"),
    ]


async def test_loopback_server_refused_when_private_not_allowed(server: Server) -> None:
    async with guarded_client(allow_private=False, timeout=5) as client:
        for url in (
            f"http://localhost:{server.port}/hook",
            f"http://127.0.0.1:{server.port}/hook",
            f"http://[::ffff:127.0.0.1]:{server.port}/hook",
        ):
            with pytest.raises(UnsafeConnection, match="loopback"):
                await client.post(url, content=b"{}")
    assert server.seen == []


async def test_userinfo_not_in_send_time_errors(server: Server) -> None:
    async with guarded_client(allow_private=False, timeout=5) as client:
        with pytest.raises(UnsafeConnection) as info:
            await client.post(f"http://alice:s3cret@localhost:{server.port}/hook", content=b"{}")
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
    assert "s3cret" not in repr(info.value)


def test_client_ignores_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would resolve the name itself, after the check."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    client = guarded_client(allow_private=False, timeout=1)
    assert isinstance(client._transport, GuardedTransport)
    assert client._mounts == {}
    assert client.follow_redirects is False


# -- TLS: the name is used for SNI and verification, and verified connections are not shared ----


def _certificates(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A test CA and a certificate it signed for tls.test; (server context, client context)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netguard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tls.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "leaf.pem", directory / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server_ctx, client_ctx


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[Server, ssl.SSLContext]]:
    server_ctx, client_ctx = _certificates(tmp_path)
    s = Server(tls=server_ctx)
    yield s, client_ctx
    s.close()


async def test_https_verifies_the_name_not_the_address(dns: FakeDNS, tls: tuple[Server, ssl.SSLContext]) -> None:
    server, client_ctx = tls
    dns.set("tls.test", ["127.0.0.1"])
    dns.set("other.test", ["127.0.0.1"])
    guard = GuardedTransport(allow_private=True, verify=client_ctx)
    async with httpx.AsyncClient(transport=guard, timeout=5) as client:
        r = await client.post(f"https://tls.test:{server.port}/hook", content=b"{}")
        assert r.status_code == 200
        # Same address, another name: the connection verified for tls.test is not reused, and
        # a new one fails verification, as it would without the guard.
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            await client.post(f"https://other.test:{server.port}/hook", content=b"{}")
        # The name itself still works after that, on a fresh connection.
        r = await client.post(f"https://tls.test:{server.port}/again", content=b"{}")
        assert r.status_code == 200
    assert server.server_names == ["tls.test", "other.test", "tls.test"]
    assert [(host, path) for host, path, _ in server.seen] == [
        (f"tls.test:{server.port}", "/hook"),
        (f"tls.test:{server.port}", "/again"),
    ]
