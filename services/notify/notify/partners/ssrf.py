"""Which webhook URLs the platform may call (DESIGN §8: SSRF guard).

A URL is refused unless it is ``https`` (``http`` only in development or for
an allow-listed host), has a host name and no credentials, and every address
its host resolves to is public: private, loopback, link-local (cloud metadata
included), multicast, reserved, shared (CGNAT) and unspecified addresses are
refused, IPv4 and IPv6 alike (IPv4-mapped IPv6 too). The check runs when the
URL is saved and again before every call; the call then goes to the very
address that was checked (``Target.address``), so a DNS answer that changes
in between (DNS rebinding) cannot redirect it. Redirects are never followed.

``WEBHOOK_ALLOWED_HOSTS`` lists host names or networks (``127.0.0.0/8,::1``)
allowed despite all this: for tests and local development only.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

MAX_URL = 2000

Resolver = Callable[[str, int], list[str]]


class UnsafeUrl(ValueError):
    """``str(exc)`` is the French reason shown to the agency."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"Le nom d'hôte « {host} » ne se résout pas.") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Allowed:
    hosts: frozenset[str] = frozenset()
    networks: tuple = ()

    @classmethod
    def parse(cls, value: str | None) -> Allowed:
        hosts, networks = set(), []
        for item in (value or "").split(","):
            item = item.strip().lower()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item)
        return cls(frozenset(hosts), tuple(networks))

    def host(self, host: str) -> bool:
        return host in self.hosts

    def address(self, ip) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``address``) and what to ask for."""

    scheme: str
    host: str  # the name, for the Host header and TLS (SNI, certificate)
    port: int
    path: str  # path and query
    address: str  # the checked IP to connect to


def _public(ip) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check(
    url,
    allowed: Allowed = Allowed(),
    development: bool = False,
    resolve: Resolver = system_resolver,
) -> Target:
    """The target of a URL that may be called, else ``UnsafeUrl``."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeUrl("Une adresse https:// est attendue.")
    url = url.strip()
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"L'adresse dépasse {MAX_URL} caractères.")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl("L'adresse est mal formée.") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("https", "http"):
        raise UnsafeUrl("Une adresse https:// est attendue.")
    if not host:
        raise UnsafeUrl("L'adresse n'a pas de nom d'hôte.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("L'adresse ne doit pas contenir d'identifiant ni de mot de passe.")
    if parts.fragment:
        raise UnsafeUrl("L'adresse ne doit pas contenir de fragment (#…).")
    port = port or (443 if scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [host] if literal is not None else resolve(host, port)
    if not addresses:
        raise UnsafeUrl(f"Le nom d'hôte « {host} » ne se résout pas.")
    trusted = allowed.host(host)
    checked = []
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if not (trusted or allowed.address(ip) or _public(ip)):
            raise UnsafeUrl(
                f"L'adresse {ip} de « {host} » est privée, locale ou réservée : "
                "seules les adresses publiques sont appelées."
            )
        checked.append(ip)
    listed = trusted or all(allowed.address(ip) for ip in checked)
    if scheme == "http" and not (development or listed):
        raise UnsafeUrl(
            "Une adresse https:// est attendue (http n'est accepté qu'en développement)."
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port, path, str(checked[0]))
