"""Local stand-in for the public "API Recherche d'entreprises" (SIRENE look-up).

The embedded default of the platform's registry base URL: it serves the small
bundled data set ``sirene_data.json`` (fictional training organisations) in the
format of ``GET https://recherche-entreprises.api.gouv.fr/search``, so that
registration works offline and tests are deterministic.

Like the real search it is fuzzy: a 14-digit query (a SIRET) returns the unit
whose SIREN is its first 9 digits even when that SIRET is not one of the unit's
establishments (``matching_etablissements`` is then empty). Callers must check
the returned SIRET themselves.

    python deploy/sirene_standin.py --port 8690 [--host 127.0.0.1] [--data FILE]
                                    [--mode normal|hang|error]

``--port 0`` picks a free port.

Fault injection (docs/architecture.md §9 "Dependencies fail soft"): in ``hang`` mode a
search is accepted and never answered (the connection stays open, as a
registry that hangs), until the mode changes or ``HANG_MAX_SECONDS`` pass;
in ``error`` mode it answers 503. ``POST /_standin/mode?mode=hang`` switches
the mode at run time (``GET /_standin/mode`` reads it); loopback tools only.

The first stdout line is always ``{"port": N}``. Stdlib only; stops cleanly on SIGINT and SIGTERM.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import signal
import sys
import threading
import unicodedata
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DEFAULT_DATA = Path(__file__).resolve().with_name("sirene_data.json")
PER_PAGE_MAX = 25
MATCHING_DEFAULT = 10
MATCHING_MAX = 100

MODES = ("normal", "hang", "error")
HANG_MAX_SECONDS = 300.0

# the real API's wording
MISSING_QUERY = "Veuillez indiquer au moins un paramètre de recherche."
SHORT_QUERY = "3 caractères minimum pour les termes de la requête (ou utilisez au moins un filtre)"


def fold(text: str) -> str:
    """Upper case without accents, punctuation as spaces (search-side only)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    return re.sub(r"[^A-Z0-9]+", " ", text).strip()


class Registry:
    """The bundled units and the search over them."""

    def __init__(self, units: list[dict]):
        self.units = units
        self._unit_words = [self._words(u, *u["etablissements"]) for u in units]

    @classmethod
    def load(cls, path: str | Path = DEFAULT_DATA) -> Registry:
        with open(path, encoding="utf-8") as src:
            return cls(json.load(src)["unites_legales"])

    @staticmethod
    def _words(unit: dict, *etabs: dict) -> set[str]:
        parts = [
            unit["siren"],
            unit["nom_complet"],
            unit["nom_raison_sociale"],
            unit.get("sigle") or "",
        ]
        for e in etabs:
            parts += [
                e["siret"],
                e["adresse"],
                e["libelle_commune"],
                e["code_postal"],
                *(e.get("liste_enseignes") or []),
            ]
        return set(fold(" ".join(parts)).split())

    @staticmethod
    def _all_found(tokens: list[str], words: set[str]) -> bool:
        return all(any(w.startswith(t) for w in words) for t in tokens)

    def search(self, query: str, limit_matching: int = MATCHING_DEFAULT) -> list[dict]:
        """Every unit matching ``query``, best first, in the API's result format."""
        compact = re.sub(r"\s+", "", query)
        hits: list[tuple[dict, list[dict]]] = []
        if compact.isdigit() and len(compact) == 14:
            for unit in self.units:
                if unit["siren"] == compact[:9]:
                    hits.append(
                        (unit, [e for e in unit["etablissements"] if e["siret"] == compact])
                    )
        elif compact.isdigit() and len(compact) == 9:
            hits = [(u, []) for u in self.units if u["siren"] == compact]
        else:
            tokens = fold(query).split()
            scored = []
            for unit, words in zip(self.units, self._unit_words, strict=True):
                if not tokens or not self._all_found(tokens, words):
                    continue
                matching = [
                    e
                    for e in unit["etablissements"]
                    if self._all_found(tokens, self._words(unit, e))
                ]
                name = set(fold(unit["nom_complet"]).split())
                score = sum(any(w.startswith(t) for w in name) for t in tokens)
                scored.append((-score, unit["nom_raison_sociale"], unit, matching))
            scored.sort(key=lambda item: item[:2])
            hits = [(unit, matching) for _, _, unit, matching in scored]
        return [self._result(u, m[:limit_matching]) for u, m in hits]

    @staticmethod
    def _result(unit: dict, matching: list[dict]) -> dict:
        result = {k: copy.deepcopy(v) for k, v in unit.items() if k != "etablissements"}
        etabs = unit["etablissements"]
        result["siege"] = copy.deepcopy(next(e for e in etabs if e["est_siege"]))
        result["nombre_etablissements"] = len(etabs)
        result["nombre_etablissements_ouverts"] = sum(e["etat_administratif"] == "A" for e in etabs)
        result["matching_etablissements"] = copy.deepcopy(matching)
        return result


class BadRequest(ValueError):
    pass


def _int_param(params: dict, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, [None])[0]
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Le paramètre '{name}' doit être un nombre entier.") from None
    if not low <= value <= high:
        raise BadRequest(f"Le paramètre '{name}' doit être compris entre {low} et {high}.")
    return value


def search_response(registry: Registry, raw_query: str) -> dict:
    """The body of ``GET /search?<raw_query>``, or ``BadRequest``."""
    params = parse_qs(raw_query, keep_blank_values=True)
    query = (params.get("q", [""])[0] or "").strip()
    if not query:
        raise BadRequest(MISSING_QUERY)
    if len(query) < 3:
        raise BadRequest(SHORT_QUERY)
    page = _int_param(params, "page", 1, 1, 1000)
    per_page = _int_param(params, "per_page", 10, 1, PER_PAGE_MAX)
    limit = _int_param(params, "limite_matching_etablissements", MATCHING_DEFAULT, 1, MATCHING_MAX)
    results = registry.search(query, limit)
    start = (page - 1) * per_page
    return {
        "results": results[start : start + per_page],
        "total_results": len(results),
        "page": page,
        "per_page": per_page,
        "total_pages": math.ceil(len(results) / per_page),
    }


class Mode:
    """The stand-in's behaviour, switched at run time; hanging requests wait
    on it and are answered as soon as the mode is no longer ``hang``."""

    def __init__(self, mode: str = "normal"):
        self._cond = threading.Condition()
        self.set(mode)

    def set(self, mode: str) -> None:
        if mode not in MODES:
            raise BadRequest(f"mode inconnu : {mode!r} (attendu : {', '.join(MODES)})")
        with self._cond:
            self.value = mode
            self._cond.notify_all()

    def wait_while_hanging(self, limit: float = HANG_MAX_SECONDS) -> str:
        with self._cond:
            self._cond.wait_for(lambda: self.value != "hang", timeout=limit)
            return self.value


def make_handler(registry: Registry, verbose: bool = False, mode: Mode | None = None):
    mode = mode or Mode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "sirene-standin/1"

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_POST(self):  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            if url.path.rstrip("/") != "/_standin/mode":
                self._send(404, {"erreur": "Not found"})
                return
            try:
                mode.set((parse_qs(url.query).get("mode") or [""])[0])
            except BadRequest as exc:
                self._send(400, {"erreur": str(exc)})
                return
            self._send(200, {"mode": mode.value})

        def do_GET(self):  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            if url.path.rstrip("/") == "/_standin/mode":
                self._send(200, {"mode": mode.value})
                return
            if url.path.rstrip("/") != "/search":
                self._send(404, {"erreur": "Not found"})
                return
            current = mode.value
            if current == "hang":
                current = mode.wait_while_hanging()
            if current == "error":
                self._send(503, {"erreur": "Service momentanément indisponible"})
                return
            try:
                self._send(200, search_response(registry, url.query))
            except BadRequest as exc:
                self._send(400, {"erreur": str(exc)})

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, fmt, *args):
            if verbose:
                super().log_message(fmt, *args)

    return Handler


def make_server(
    host: str, port: int, registry: Registry, verbose: bool = False, mode: str = "normal"
) -> ThreadingHTTPServer:
    state = Mode(mode)
    server = ThreadingHTTPServer((host, port), make_handler(registry, verbose, state))
    server.daemon_threads = True
    server.mode = state  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8690, help="0 picks a free port")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="bundled data set (JSON)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    parser.add_argument("--mode", choices=MODES, default="normal", help="fault injection")
    args = parser.parse_args(argv)

    server = make_server(args.host, args.port, Registry.load(args.data), args.verbose, args.mode)

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return: not from its own thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
