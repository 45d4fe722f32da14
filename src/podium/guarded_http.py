"""The httpx half of the webhook guard (podium.netguard has the rules): a transport that checks
every request's host at send time and connects only to an address it checked.

Its own module so that httpx (and the command-line extras it imports when they are installed:
rich, click, pygments) loads with the first webhook sent, not with every server.
"""

from __future__ import annotations

import ssl

import httpx

from podium.netguard import UnsafeURL, resolve_public, target


class UnsafeConnection(httpx.TransportError, UnsafeURL):
    """Raised by `GuardedTransport`: an httpx error, so a sender's `except httpx.HTTPError` sees
    it as a failed attempt, and an `UnsafeURL`, so the reason is not lost."""


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
            host, port = target(url)
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
