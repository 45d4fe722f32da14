"""Keep webhooks off the private network: a user-supplied URL must not reach loopback, link-local
(cloud metadata at 169.254.169.254), private, shared or multicast addresses, or it becomes a way
to probe and call services behind the firewall (SSRF).

`check_url` refuses a bad URL when a request names it. That alone is not enough: DNS can answer
with a public address at check time and with 127.0.0.1 when the connection is made (rebinding).
So `GuardedTransport` resolves and checks again for every request it sends, and connects to the
address it checked, never to the name. PODIUM_WEBHOOK_ALLOW_PRIVATE=1 turns the address checks
off (local development and tests deliver to 127.0.0.1); the scheme check stays.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl

import httpx

ALLOW_PRIVATE_ENV = "PODIUM_WEBHOOK_ALLOW_PRIVATE"
SCHEMES = ("http", "https")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: NAT64 embeds an IPv4 address in its last 32 bits; judge that address, not the prefix.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A URL Podium will not send to. The message names the host and why, never the userinfo."""


class UnsafeConnection(httpx.TransportError, UnsafeURL):
    """Raised by `GuardedTransport`: an httpx error, so a sender's `except httpx.HTTPError` sees
    it as a failed attempt, and an `UnsafeURL`, so the reason is not lost."""


def allow_private_from_env() -> bool:
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def _reason(ip: IPAddress) -> str | None:
    """Why `ip` is not public ("a loopback address"), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        # Mapped and NAT64 addresses are translated: the IPv4 address is the real destination.
        mapped = ip.ipv4_mapped
        if mapped is None and ip in _NAT64:
            mapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if mapped is not None:
            why = _reason(mapped)
            return None if why is None else f"{why} ({mapped} inside IPv6)"
        # 6to4 and Teredo tunnel to the IPv4 address; the IPv6 address must pass as well.
        for inner in (ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            why = None if inner is None else _reason(inner)
            if why is not None:
                return f"{why} ({inner} inside IPv6)"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def is_public(ip: IPAddress) -> bool:
    """True if `ip` is a globally routable unicast address."""
    return _reason(ip) is None


def _blocked(host: str, address: str, why: str) -> UnsafeURL:
    what = f"is {why}" if host == address else f"resolves to {address}, {why}"
    return UnsafeURL(
        f"webhook host {host} {what}; set {ALLOW_PRIVATE_ENV}=1 to allow private targets"
    )


async def resolve_public(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses `host` resolves to, in resolver order. Raises `UnsafeURL` if it does not
    resolve, or (unless `allow_private`) if any address is not public: one bad answer is enough,
    since which one a connection would use is not ours to predict."""
    host = host.strip("[]")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise UnsafeURL(f"webhook host {host} could not be resolved: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise UnsafeURL(f"webhook host {host} could not be resolved: no addresses")
    if not allow_private:
        for address in addresses:
            why = _reason(ipaddress.ip_address(address))
            if why is not None:
                raise _blocked(host, address, why)
    return addresses


def _target(url: httpx.URL) -> tuple[str, int]:
    """The host (IDNA-encoded, as it will be looked up) and port a URL connects to."""
    if url.scheme not in SCHEMES:
        raise UnsafeURL(f"webhook URL scheme must be http or https, not {url.scheme!r}")
    if not url.raw_host:
        raise UnsafeURL("webhook URL has no host")
    return url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80)


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise `UnsafeURL` unless `url` is http(s) with a host that resolves to public addresses."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        # httpx's message may quote parts of the URL, userinfo included; so say less.
        raise UnsafeURL("webhook URL is not a valid URL") from None
    host, port = _target(parsed)
    await resolve_public(host, port, allow_private=allow_private)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks every request's host at send time and pins the connection to a checked address.

    The URL's host is swapped for the address for the duration of the send; the Host header
    keeps the name, and for https so does SNI and certificate verification. Every request is
    checked, whatever its URL, so redirects and reuse of the client cannot slip past.

    https connections are never kept alive: the pool keys connections by address, and a TLS
    connection verified for one name must not carry a request for another name that happens to
    share the address. Plain http may reuse them; the address was checked either way.

    Parameters:
        allow_private: skip the address checks (the scheme is still checked).
        verify: as for httpx, e.g. an `ssl.SSLContext` trusting a test CA.
    """

    def __init__(self, *, allow_private: bool, verify: ssl.SSLContext | bool = True) -> None:
        self.allow_private = allow_private
        self._http = httpx.AsyncHTTPTransport(verify=verify)
        self._https = httpx.AsyncHTTPTransport(
            verify=verify, limits=httpx.Limits(max_connections=100, max_keepalive_connections=0)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url, extensions = request.url, request.extensions
        try:
            host, port = _target(url)
            addresses = await resolve_public(host, port, allow_private=self.allow_private)
        except UnsafeURL as exc:
            raise UnsafeConnection(str(exc), request=request) from None
        transport = self._http
        if url.scheme == "https":
            transport = self._https
            # A new dict: httpx hands this one on to a redirect's request, which may go elsewhere.
            request.extensions = {**extensions, "sni_hostname": host}
        try:
            for address in addresses[:-1]:
                request.url = url.copy_with(host=address)
                try:
                    return await transport.handle_async_request(request)
                except httpx.ConnectError:
                    continue  # the next checked address, as a plain client would
            request.url = url.copy_with(host=addresses[-1])
            return await transport.handle_async_request(request)
        finally:
            # The client reads the request afterwards (redirects, errors, logs): give it back.
            request.url, request.extensions = url, extensions

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._https.aclose()


def guarded_client(*, allow_private: bool, timeout: float) -> httpx.AsyncClient:
    """An AsyncClient for user-supplied URLs: every request goes through `GuardedTransport`, no
    redirects are followed by default, and no proxy is taken from the environment (a proxy
    would resolve the name itself, after our check)."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
