"""Who may reach ``qe-nb app``: the token, the ``Host`` header and the ``Origin`` of a request.

The server (:mod:`qe_nb.ui.voila_server`) uses Voila's own token login (jupyter_server's
identity provider: ``?token=...`` once, then a cookie) and jupyter_server's websocket origin
check; this module adds what those lack, as plain functions over header values:

- :func:`token_required` -- a token is required on every address other than loopback;
- :func:`new_token` -- a random token (:func:`secrets.token_urlsafe`), as Jupyter makes one;
- :func:`host_allowed` -- the ``Host`` header names this server (refuses DNS rebinding: a page of
  ``evil.example`` whose name the attacker re-points to this machine sends ``Host: evil.example``);
- :func:`origin_allowed` -- a request's ``Origin`` (a websocket handshake's in particular) is the
  page's own ``Host``;
- :func:`server_names` -- the names this machine answers to (for the ``Host`` check);
- :func:`app_url` -- the address to open, with the token, as Jupyter prints it.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from collections.abc import Collection
from urllib.parse import quote, urlsplit

from qe_nb.exceptions import InputError

__all__ = ["TOKEN_VARIABLE", "HOSTS_VARIABLE", "LOCAL_NAMES", "is_loopback", "token_required", "new_token", "server_names", "split_host",
           "host_allowed", "origin_allowed", "refusal", "app_url"]

TOKEN_VARIABLE = "QE_NB_APP_TOKEN"
"""The environment variable that carries the token to the server (not the command line, where
other users of the machine could read it in the process list)."""
HOSTS_VARIABLE = "QE_NB_APP_ALLOW_HOSTS"
"""Extra host names (comma-separated) the server's ``Host`` check accepts."""

LOCAL_NAMES: frozenset[str] = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
"""Host names that always mean this machine."""

_HOST_PORT = re.compile(r"^(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>\d+))?$")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_loopback(address: str) -> bool:
    """Whether the server address ``address`` (``--host``) is reachable from this machine only.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if address.lower() in LOCAL_NAMES:
        return True
    ip = _ip(address)
    return ip is not None and ip.is_loopback


def token_required(address: str) -> bool:
    """True for every server address other than loopback: there the app must ask for a token."""
    return not is_loopback(address)


def new_token() -> str:
    """A fresh random token (48 URL-safe characters), as Jupyter generates one."""
    return secrets.token_urlsafe(36)


def server_names(address: str, extra: Collection[str] = ()) -> frozenset[str]:
    """The host names (lower case, no port) a ``Host`` header may carry for a server on ``address``.

    Always :data:`LOCAL_NAMES`; for an address other than loopback also this machine's name, its
    fully qualified name and ``address`` itself when it is a name; plus ``extra`` (``--allow-host``,
    e.g. a DNS alias or the name of a reverse proxy). IP literals are judged by :func:`host_allowed`.
    """
    names = set(LOCAL_NAMES)
    if not is_loopback(address):
        for name in (socket.gethostname(), socket.getfqdn()):
            if name:
                names.add(name.lower())
                names.add(name.lower().split(".")[0])
        if address and _ip(address) is None:
            names.add(address.lower())
    names.update(n.strip().lower() for n in extra if n.strip())
    return frozenset(names)


def split_host(host: str) -> tuple[str, int | None]:
    """``"name:port"`` / ``"[::1]:8866"`` / ``"10.0.0.5"`` -> (host in lower case, port or None).

    Examples
    --------
    >>> split_host("Example.org:8866"), split_host("[::1]:80"), split_host("10.0.0.5")
    (('example.org', 8866), ('::1', 80), ('10.0.0.5', None))
    """
    match = _HOST_PORT.match(host.strip())
    if not match:
        return host.strip().lower(), None
    port = match.group("port")
    return match.group("host").strip("[]").lower(), None if port is None else int(port)


def host_allowed(host_header: str | None, *, address: str, names: Collection[str]) -> bool:
    """Whether a request's ``Host`` header names this server.

    A name must be one of ``names`` (:func:`server_names`). An IP literal must be loopback when
    the server listens on loopback only; otherwise any IP literal is this server reached by its
    address (a DNS-rebinding page cannot send one: its ``Host`` is the attacker's name).
    A missing or empty ``Host`` is refused (HTTP/1.1 requires one; browsers always send it).

    Examples
    --------
    >>> names = server_names("127.0.0.1")
    >>> host_allowed("127.0.0.1:8866", address="127.0.0.1", names=names)
    True
    >>> host_allowed("evil.example:8866", address="127.0.0.1", names=names)
    False
    >>> host_allowed("10.1.2.3:8866", address="127.0.0.1", names=names)
    False
    """
    if not host_header:
        return False
    host, _ = split_host(host_header)
    ip = _ip(host)
    if ip is not None:
        return ip.is_loopback or not is_loopback(address)
    return host in {n.lower() for n in names}


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
    """Whether a request's ``Origin`` is the page's own host (scheme aside); no ``Origin`` (a
    script or a same-origin navigation) is allowed -- the ``Host`` check covers those.

    Examples
    --------
    >>> origin_allowed("http://127.0.0.1:8866", "127.0.0.1:8866"), origin_allowed(None, "h:1")
    (True, True)
    >>> origin_allowed("http://evil.example", "127.0.0.1:8866"), origin_allowed("null", "h:1")
    (False, False)
    """
    if origin is None:
        return True
    if not host_header:
        return False
    netloc = urlsplit(origin.strip().lower()).netloc
    return bool(netloc) and netloc == host_header.strip().lower()


def refusal(headers: dict[str, str] | object, *, address: str, names: Collection[str]) -> str | None:
    """Why a request with these headers must be refused (403), or None to let it through.

    ``headers`` is a mapping with ``get`` (tornado's ``HTTPHeaders`` is case-insensitive; a plain
    dict must use the canonical ``Host`` / ``Origin`` spelling).
    """
    get = headers.get  # type: ignore[attr-defined]
    host = get("Host")
    if not host_allowed(host, address=address, names=names):
        return f"Host {host!r} is not this server"
    origin = get("Origin") or get("Sec-Websocket-Origin")
    if not origin_allowed(origin, host):
        return f"Origin {origin!r} is not this server ({host!r})"
    return None


def app_url(address: str, port: int, token: str | None = None) -> str:
    """The address to open in a browser, as Jupyter prints it: ``http://HOST:PORT/?token=TOKEN``.

    For a wildcard address (``0.0.0.0``, ``::``, "") HOST is this machine's name.

    Raises
    ------
    InputError
        For a port outside 1..65535.

    Examples
    --------
    >>> app_url("127.0.0.1", 8866, "abc")
    'http://127.0.0.1:8866/?token=abc'
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InputError(f"`port` must be an integer in 1..65535; got {port!r}.")
    host = address
    ip = _ip(address) if address else None
    if not address or (ip is not None and ip.is_unspecified):
        host = socket.gethostname() or "localhost"
    elif ip is not None and ip.version == 6:
        host = f"[{ip}]"
    query = f"?token={quote(token, safe='')}" if token else ""
    return f"http://{host}:{port}/{query}"
