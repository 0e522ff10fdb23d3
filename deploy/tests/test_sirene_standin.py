"""The SIRENE stand-in as a process: the real API's response format, its fuzzy
SIRET search, its 400s, and a clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from stdnum.fr import siret as siret_rule

SCRIPT = Path(__file__).resolve().parents[1] / "sirene_standin.py"
DATA = Path(__file__).resolve().parents[1] / "sirene_data.json"

RESULT_KEYS = {
    "siren",
    "nom_complet",
    "nom_raison_sociale",
    "etat_administratif",
    "siege",
    "matching_etablissements",
    "activite_principale",
    "nature_juridique",
    "nombre_etablissements",
    "nombre_etablissements_ouverts",
}
ETAB_KEYS = {
    "siret",
    "adresse",
    "etat_administratif",
    "activite_principale",
    "commune",
    "code_postal",
    "libelle_commune",
    "est_siege",
}


def start():
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    try:
        port = json.loads(line)["port"]
    except (ValueError, KeyError):
        proc.kill()
        raise AssertionError(f"no port line: {line!r} {proc.stderr.read()}") from None
    return proc, f"http://127.0.0.1:{port}"


def stop(proc, sig=signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode


@pytest.fixture(scope="module")
def base_url():
    proc, url = start()
    yield url
    stop(proc)


def get(base_url, path, **params):
    url = f"{base_url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def search(base_url, q, **params):
    status, body = get(base_url, "/search", q=q, page=1, per_page=10, **params)
    assert status == 200, body
    return body


def test_a_known_siret_returns_its_unit_and_establishment(base_url):
    body = search(base_url, "41816609600051")
    assert (body["total_results"], body["page"], body["per_page"], body["total_pages"]) == (
        1,
        1,
        10,
        1,
    )
    (unit,) = body["results"]
    assert RESULT_KEYS <= set(unit)
    assert unit["siren"] == "418166096"
    assert unit["nom_complet"].startswith("CFA DES METIERS DE L'EXEMPLE")
    assert unit["etat_administratif"] == "A"
    (etab,) = unit["matching_etablissements"]
    assert ETAB_KEYS <= set(etab)
    assert etab["siret"] == "41816609600051"
    assert etab["etat_administratif"] == "A"
    assert etab["adresse"].endswith("69007 LYON")
    assert unit["siege"]["siret"] == "41816609600051" and unit["siege"]["est_siege"] is True


def test_spaces_in_a_siret_are_ignored(base_url):
    unit = search(base_url, "356 000 000 18723")["results"][0]
    assert unit["matching_etablissements"][0]["siret"] == "35600000018723"
    assert unit["siege"]["siret"] == "35600000000048"


def test_a_closed_establishment_says_so(base_url):
    unit = search(base_url, "73282932000017")["results"][0]
    assert unit["etat_administratif"] == "A"
    assert unit["matching_etablissements"][0]["etat_administratif"] == "F"
    assert unit["matching_etablissements"][0]["date_fermeture"] == "2021-06-30"


def test_a_ceased_unit_and_its_closed_establishment(base_url):
    unit = search(base_url, "80733173100016")["results"][0]
    assert unit["etat_administratif"] == "C"
    assert unit["nombre_etablissements_ouverts"] == 0
    assert unit["matching_etablissements"][0]["etat_administratif"] == "F"


def test_an_unknown_siret_finds_nothing(base_url):
    body = search(base_url, "77727974600013")
    assert body["results"] == []
    assert (body["total_results"], body["total_pages"]) == (0, 0)


def test_an_unknown_siret_of_a_known_siren_still_returns_that_unit(base_url):
    (unit,) = search(base_url, "41816609600036")["results"]
    assert unit["siren"] == "418166096"
    assert unit["matching_etablissements"] == []
    sirets = {unit["siege"]["siret"]} | {e["siret"] for e in unit["matching_etablissements"]}
    assert "41816609600036" not in sirets


def test_a_siren_returns_the_unit_without_matching_establishments(base_url):
    (unit,) = search(base_url, "403009202")["results"]
    assert unit["nombre_etablissements"] == 3
    assert unit["matching_etablissements"] == []


def test_text_search_ignores_case_and_accents_and_ranks_names_first(base_url):
    body = search(base_url, "métiers exemple")
    names = [u["nom_raison_sociale"] for u in body["results"]]
    assert names[0] in {
        "CFA DES METIERS DE L'EXEMPLE",
        "INSTITUT DES METIERS DE BOUCHE DE L'EXEMPLE",
    }
    assert set(names) == {
        "CFA DES METIERS DE L'EXEMPLE",
        "INSTITUT DES METIERS DE BOUCHE DE L'EXEMPLE",
    }
    (etab,) = search(base_url, "vallee voiron")["results"][0]["matching_etablissements"]
    assert etab["libelle_commune"] == "VOIRON"


def test_results_are_paginated(base_url):
    status, first = get(base_url, "/search", q="cfa", page=1, per_page=2)
    status2, second = get(base_url, "/search", q="cfa", page=2, per_page=2)
    assert status == status2 == 200
    assert first["total_results"] >= 4
    assert first["total_pages"] == -(-first["total_results"] // 2)
    assert len(first["results"]) == 2
    assert {u["siren"] for u in first["results"]}.isdisjoint(u["siren"] for u in second["results"])


@pytest.mark.parametrize(
    "params", [{}, {"q": ""}, {"q": "ab"}, {"q": "cfa", "per_page": 99}, {"q": "cfa", "page": "x"}]
)
def test_a_missing_or_short_query_is_a_400(base_url, params):
    status, body = get(base_url, "/search", **params)
    assert status == 400
    assert body["erreur"]


def test_unknown_paths_are_404(base_url):
    assert get(base_url, "/v3/etablissements")[0] == 404
    assert get(base_url, "/")[0] == 404


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_it_stops_cleanly_on_a_signal(sig):
    proc, url = start()
    assert get(url, "/search", q="41816609600051")[0] == 200
    assert stop(proc, sig) == 0


def test_the_data_set_is_valid_and_documented():
    data = json.loads(DATA.read_text(encoding="utf-8"))
    units = data["unites_legales"]
    assert len(units) >= 15
    served = {e["siret"]: e for u in units for e in u["etablissements"]}
    for required in ("41816609600051", "73282932000074", "35600000018723", "35600000000048"):
        assert required in served
    assert set(served) <= set(data["sirets"])
    assert all(siret_rule.is_valid(s) for s in data["sirets"])
    assert any(e["etat_administratif"] == "F" for e in served.values())
    for unit in units:
        assert sum(e["est_siege"] for e in unit["etablissements"]) == 1
        assert all(e["siret"].startswith(unit["siren"]) for e in unit["etablissements"])


def _set_mode(base_url, mode):
    req = urllib.request.Request(f"{base_url}/_standin/mode?mode={mode}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["mode"]


def test_hang_mode_holds_a_search_until_released_and_error_mode_is_503():
    import threading
    import time

    proc, url = start()
    try:
        assert _set_mode(url, "hang") == "hang"
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            urllib.request.urlopen(f"{url}/search?q=boulangerie", timeout=0.5)
        answers = []
        waiter = threading.Thread(
            target=lambda: answers.append(get(url, "/search", q="boulangerie")[0])
        )
        started = time.monotonic()
        waiter.start()
        time.sleep(0.3)
        assert not answers  # still hanging
        assert _set_mode(url, "error") == "error"
        waiter.join(5)
        assert answers == [503] and time.monotonic() - started < 4
        assert get(url, "/_standin/mode") == (200, {"mode": "error"})
        assert _set_mode(url, "normal") == "normal"
        assert get(url, "/search", q="boulangerie")[0] == 200
        with pytest.raises(urllib.error.HTTPError):
            _set_mode(url, "sideways")
    finally:
        stop(proc)
