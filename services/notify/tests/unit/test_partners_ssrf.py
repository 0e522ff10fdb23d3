"""The SSRF guard of webhook URLs: IPv4, IPv6 (mapped forms included), names
that resolve to private addresses, DNS rebinding, the allow-list and the
development switch. Redirects are covered with a real server in
``test_partners_delivery.py`` (never followed)."""

from __future__ import annotations

import pytest

from notify.partners import ssrf
from notify.partners.settings import PartnerSettings


def resolver(table: dict[str, list[str]]):
    """A DNS that answers from a table (the real one is outside our control)."""

    def resolve(host: str, _port: int) -> list[str]:
        if host not in table:
            raise ssrf.UnsafeUrl(f"Le nom d'hôte « {host} » ne se résout pas.")
        return table[host]

    return resolve


PUBLIC = resolver({"hooks.region.example.fr": ["93.184.216.34"]})


def test_a_public_https_url_is_accepted_and_the_call_goes_to_the_checked_address():
    target = ssrf.check("https://hooks.region.example.fr/cloud?x=1", resolve=PUBLIC)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.region.example.fr", 443)
    assert target.path == "/cloud?x=1"
    assert target.address == "93.184.216.34"


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.10",
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared (CGNAT)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
    ],
)
def test_ipv4_addresses_that_are_not_public_are_refused(address):
    with pytest.raises(ssrf.UnsafeUrl, match="privée, locale ou réservée"):
        ssrf.check(f"https://{address}/hook")


@pytest.mark.parametrize(
    "address",
    [
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",  # IPv4-mapped metadata
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    ],
)
def test_ipv6_addresses_that_are_not_public_are_refused_mapped_forms_included(address):
    with pytest.raises(ssrf.UnsafeUrl):
        ssrf.check(f"https://[{address}]/hook")


def test_a_public_ipv6_address_is_accepted():
    target = ssrf.check("https://[2001:4860:4860::8888]:8443/hook")
    assert (target.address, target.port) == ("2001:4860:4860::8888", 8443)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://0x7f.1/hook",
        "http://017700000001/hook",
    ],
)
def test_numeric_spellings_of_loopback_are_refused_by_the_real_resolver(url):
    with pytest.raises(ssrf.UnsafeUrl):
        ssrf.check(url, development=True)


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    mixed = resolver({"hooks.example.fr": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(ssrf.UnsafeUrl, match="10.0.0.7"):
        ssrf.check("https://hooks.example.fr/hook", resolve=mixed)


def test_localhost_and_names_resolving_to_metadata_are_refused():
    with pytest.raises(ssrf.UnsafeUrl):
        ssrf.check("https://localhost/hook")
    metadata = resolver({"metadata.attacker.example": ["169.254.169.254"]})
    with pytest.raises(ssrf.UnsafeUrl, match="169.254.169.254"):
        ssrf.check("https://metadata.attacker.example/latest", resolve=metadata)


def test_dns_rebinding_is_caught_because_every_call_resolves_and_checks_again():
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    settings = PartnerSettings(resolve=lambda _host, _port: next(answers))
    # saved while the name pointed at a public address…
    assert settings.check_url("https://rebind.example.fr/hook").address == "93.184.216.34"
    # …then the name points at the loopback: the next send is refused
    with pytest.raises(ssrf.UnsafeUrl, match="127.0.0.1"):
        settings.check_url("https://rebind.example.fr/hook")


def test_a_name_that_does_not_resolve_is_refused_in_french():
    with pytest.raises(ssrf.UnsafeUrl, match="ne se résout pas"):
        ssrf.check("https://nulle-part.invalid/hook")
    with pytest.raises(ssrf.UnsafeUrl, match="ne se résout pas"):
        ssrf.check("https://vide.example.fr/hook", resolve=resolver({"vide.example.fr": []}))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "https:// est attendue"),
        (None, "https:// est attendue"),
        ("ftp://hooks.region.example.fr/x", "https:// est attendue"),
        ("file:///etc/passwd", "https:// est attendue"),
        ("gopher://hooks.region.example.fr/", "https:// est attendue"),
        ("https:///hook", "pas de nom d'hôte"),
        ("https://user:pass@hooks.region.example.fr/hook", "identifiant"),
        ("https://hooks.region.example.fr/hook#part", "fragment"),
        ("https://hooks.region.example.fr:99999/hook", "mal formée"),
        ("https://hooks.region.example.fr/" + "a" * 2000, "2000 caractères"),
    ],
)
def test_malformed_urls_are_refused_with_a_french_reason(url, reason):
    with pytest.raises(ssrf.UnsafeUrl, match=reason):
        ssrf.check(url, resolve=PUBLIC)


def test_http_is_refused_outside_development_and_accepted_in_development():
    with pytest.raises(ssrf.UnsafeUrl, match="développement"):
        ssrf.check("http://hooks.region.example.fr/hook", resolve=PUBLIC)
    target = ssrf.check("http://hooks.region.example.fr/hook", development=True, resolve=PUBLIC)
    assert (target.scheme, target.port) == ("http", 80)
    # development never opens private addresses
    with pytest.raises(ssrf.UnsafeUrl):
        ssrf.check("http://127.0.0.1:8700/hook", development=True)


def test_the_allow_list_opens_its_networks_and_names_and_nothing_else():
    allowed = ssrf.Allowed.parse(" 127.0.0.0/8, ::1 ,receveur.test ")
    assert ssrf.check("http://127.0.0.1:8700/hook", allowed).address == "127.0.0.1"
    assert ssrf.check("http://[::1]:8700/hook", allowed).address == "::1"
    local = resolver({"receveur.test": ["10.9.8.7"]})
    assert ssrf.check("http://receveur.test/hook", allowed, resolve=local).address == "10.9.8.7"
    for url in ("http://10.0.0.1/hook", "http://[fe80::1]/hook", "http://169.254.169.254/"):
        with pytest.raises(ssrf.UnsafeUrl):
            ssrf.check(url, allowed)


def test_an_empty_allow_list_setting_allows_nothing():
    assert ssrf.Allowed.parse("") == ssrf.Allowed()
    assert ssrf.Allowed.parse(None) == ssrf.Allowed()
    with pytest.raises(ssrf.UnsafeUrl):
        ssrf.check("http://127.0.0.1/hook", ssrf.Allowed.parse(" , "), development=True)
