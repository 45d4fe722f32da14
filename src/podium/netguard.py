"""Keep webhooks off the private network: a user-supplied URL must not reach loopback, link-local
(cloud metadata at 169.254.169.254), private, shared or multicast addresses, or it becomes a way
to probe and call services behind the firewall (SSRF).

`check_url` refuses a bad URL when a request names it. That alone is not enough: DNS can answer
with a public address at check time and with 127.0.0.1 when the connection is made (rebinding).
So `GuardedTransport` (podium.guarded_http, which loads httpx: a server that sends no webhook
never needs it) resolves and checks again for every request it sends, and connects to the address
it checked, never to the name. PODIUM_WEBHOOK_ALLOW_PRIVATE=1 turns the address checks
off (local development and tests deliver to 127.0.0.1); the scheme check stays.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

ALLOW_PRIVATE_ENV = "PODIUM_WEBHOOK_ALLOW_PRIVATE"
SCHEMES = ("http", "https")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: NAT64 embeds an IPv4 address in its last 32 bits; judge that address, not the prefix.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A URL Podium will not send to. The message names the host and why, never the userinfo."""


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
    return UnsafeURL(f"webhook host {host} {what}; set {ALLOW_PRIVATE_ENV}=1 to allow private targets")


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


def target(url: httpx.URL) -> tuple[str, int]:
    """The host (IDNA-encoded, as it will be looked up) and port a URL connects to."""
    if url.scheme not in SCHEMES:
        raise UnsafeURL(f"webhook URL scheme must be http or https, not {url.scheme!r}")
    if not url.raw_host:
        raise UnsafeURL("webhook URL has no host")
    return url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80)


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise `UnsafeURL` unless `url` is http(s) with a host that resolves to public addresses."""
    import httpx  # parsed as the sender will parse it; loaded with the first webhook

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        # httpx's message may quote parts of the URL, userinfo included; so say less.
        raise UnsafeURL("webhook URL is not a valid URL") from None
    host, port = target(parsed)
    await resolve_public(host, port, allow_private=allow_private)
