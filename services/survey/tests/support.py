"""Test doubles of the survey service's collaborators (like nameko.testing):
fakes of identity and files that answer like the real services for one
caller, a few callers and organisations, and a helper that builds workbooks
from readable tables (docs/style.md: no binary fixtures).

It lives under ``tests/`` so that the service image does not ship it
(.dockerignore leaves out every ``tests`` directory); tests, tests/e2e,
tests/faults and bench import it as ``services.survey.tests.support`` from the
repository root, which they all have on their path."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import itertools

import openpyxl

from kit.context import Caller
from kit.errors import NotFound

SECRET = b"s" * 48
NOW = dt.datetime(2021, 5, 10, 9, 30, tzinfo=dt.UTC)

AGENT = Caller(user_id="agent", roles=("agency_admin",))
MANAGER_A = Caller(user_id="manager-a", org_id="org-a", roles=("manager",))
USER_A = Caller(user_id="user-a", org_id="org-a", roles=("user",))
MANAGER_B = Caller(user_id="manager-b", org_id="org-b", roles=("manager",))

ORGS = {
    "org-a": {
        "id": "org-a",
        "name": "CFA DES METIERS DE L'EXEMPLE",
        "siret": "41816609600051",
        "uai": "0750654D",
        "nda": "11930882293",
        "account_type": "OFA",
        "parent_id": "org-og",
        "status": "validated",
    },
    "org-b": {
        "id": "org-b",
        "name": "INSTITUT FICTIF",
        "siret": "73282932000074",
        "uai": None,
        "nda": "11930882294",
        "account_type": "OFA",
        "parent_id": None,
        "status": "validated",
    },
    "org-og": {
        "id": "org-og",
        "name": "OGEC FORMATION DE L'EXEMPLE",
        "siret": "40300920200017",
        "uai": None,
        "nda": "11930882295",
        "account_type": "OG",
        "parent_id": None,
        "status": "validated",
    },
}
PEOPLE = {
    "manager-a": ("DURAND Claire", "claire@cfa-a.example", "manager", "org-a"),
    "user-a": ("MARTIN Paul", "paul@cfa-a.example", "user", "org-a"),
    "manager-b": ("PETIT Anne", "anne@institut-b.example", "manager", "org-b"),
}


class FakeIdentity:
    """Answers like identity for one caller (the context travels with calls)."""

    def __init__(self, caller: Caller, orgs=None):
        self.caller = caller
        self.orgs = orgs if orgs is not None else ORGS
        self.calls = []

    def get_me(self):
        self.calls.append("get_me")
        name, email, role, org_id = PEOPLE.get(
            self.caller.user_id, ("AGENT Agence", "agent@agence.example", "agency_admin", None)
        )
        return {
            "id": self.caller.user_id,
            "display_name": name,
            "email": email,
            "role": role,
            "organisation": dict(self.orgs[org_id]) if org_id else None,
        }

    def get_organisation(self, org_id):
        self.calls.append("get_organisation")
        if org_id not in self.orgs:
            raise NotFound("identity.organisation_not_found", "Organisme introuvable.")
        return dict(self.orgs[org_id])

    def list_organisations(self, query, status, page, per_page):
        self.calls.append("list_organisations")
        items = [o for o in self.orgs.values() if status is None or o["status"] == status]
        start = (page - 1) * per_page
        return {"items": items[start : start + per_page], "total": len(items), "page": page}


class FakeFiles:
    """The files service in memory: each store is a new id, like the real one."""

    _ids = itertools.count(1)

    def __init__(self):
        self.records = {}
        self.deleted = []

    def store(self, caller: Caller, kind: str, name: str, content: bytes, owner=None) -> dict:
        file_id = f"file-{next(self._ids)}"
        self.records[file_id] = {
            "id": file_id,
            "kind": kind,
            "name": name,
            "content_type": "application/octet-stream",
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "owner_org_id": owner or caller.org_id,
            "content_b64": base64.b64encode(content).decode(),
        }
        return {k: v for k, v in self.records[file_id].items() if k != "content_b64"}

    def store_xlsx(self, meta: dict, content_b64: str) -> dict:
        """As files.store_xlsx once its checks pass: the owner is the meta's."""
        content = base64.b64decode(content_b64)
        file_id = f"file-{next(self._ids)}"
        self.records[file_id] = {
            "id": file_id,
            "kind": meta["kind"],
            "name": meta["name"],
            "content_type": meta["content_type"],
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "owner_org_id": meta["owner_org_id"],
            "content_b64": content_b64,
        }
        return {k: v for k, v in self.records[file_id].items() if k != "content_b64"}

    def get_file(self, file_id):
        if file_id not in self.records:
            raise NotFound("files.not_found", "Fichier introuvable.")
        return dict(self.records[file_id])

    def get_file_info(self, file_id):
        info = self.get_file(file_id)
        info.pop("content_b64")
        return info

    def delete_file(self, file_id):
        self.records.pop(file_id, None)
        self.deleted.append(file_id)
        return {"id": file_id}

    def discard_file(self, file_id):
        """As files.discard_file: the record goes for good (tests read ``deleted``)."""
        self.delete_file(file_id)
        return {"id": file_id, "discarded": True}


def workbook_bytes(sheets: dict[str, list[list]]) -> bytes:
    """A workbook from readable tables: ``{"Certifications": [[header…], [row…]]}``."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


HEADER = [
    "Code Diplôme",
    "Intitulé",
    "Code RNCP",
    "Niveau 2019",
    "Type",
    "Nombre d'établissements sur lesquels la formation correspondante est délivrée",
]
# the guide's example
GUIDE_ROWS = [
    ["10033101", "DE DOCTEUR EN PHARMACIE", "NR", "niveau8", "DOCTORAT", 1],
    ["1022001", "AGENT DE CONTROLE NON DESTRUCTIF (MC NIVEAU IV)", "RNCP955", "niveau4", "MC", 2],
    ["1022103", "EMPLOYE TRAITEUR (MC NIVEAU V)", "RNCP958", "niveau3", "MC", 1],
]


def valid_siret(n: int) -> str:
    """The n-th of a series of valid SIRETs (one fictional SIREN)."""
    from stdnum import luhn

    body = f"418166096{n:04d}"
    return body + luhn.calc_check_digit(body)


def valid_uai(n: int) -> str:
    digits = f"{750000 + n:07d}"
    return digits + "ABCDEFGHJKLMNPRSTUVWXYZ"[int(digits) % 23]


class Text(str):
    """A value typed as text even if it starts with "=" (Excel's leading apostrophe)."""


def fill_form(content: bytes, amount=None, overrides: dict | None = None) -> bytes:
    """A downloaded form filled in as a person would: only the unlocked
    cells, with consistent totals and keys. ``amount(sheet, row, col)`` gives
    each amount (default: a small number per cell); ``overrides`` sets cells
    afterwards, ``{"Charges!E5": -3}``, without fixing the totals."""
    wb = openpyxl.load_workbook(io.BytesIO(content))
    amount = amount or (lambda sheet, row, col: (row * 7 + col * 3) % 50 + 0.5)
    identity, certs = wb["Identité"], wb["Certifications"]
    sums = {"Charges": 0.0, "Produits": 0.0}
    column_sums: dict[int, float] = {}
    for name in ("Charges", "Produits"):
        ws = wb[name]
        for row in ws.iter_rows(min_row=5):
            for cell in row:
                if cell.protection.locked is False:
                    value = amount(name, cell.row, cell.column)
                    cell.value = value
                    sums[name] += value
                    if name == "Charges":
                        column_sums[cell.column] = column_sums.get(cell.column, 0) + value
    identity["B19"], identity["B20"], identity["B21"] = "Claire Durand", "claire@example.org", ""
    identity["B24"] = round(sums["Charges"], 2)
    identity["B25"] = round(sums["Produits"], 2)
    row = 29
    while identity.cell(row, 1).value is not None:
        number = int(identity.cell(row, 1).value)
        identity.cell(row, 2).value = valid_siret(number)
        identity.cell(row, 3).value = valid_uai(number)
        identity.cell(row, 4).value = f"Établissement {number}"
        row += 1
    row = 5
    while certs.cell(row, 1).value is not None:
        slot = int(str(certs.cell(row, 7).value).split(" ")[0])
        certs.cell(row, 8).value = slot
        certs.cell(row, 9).value = 4
        row += 1
    keys, charges = wb["Clés de répartition"], wb["Charges"]
    row = 5
    while keys.cell(row, 1).value is not None:
        label = keys.cell(row, 1).value
        column = next(c.column for c in charges[4] if str(c.value).startswith(label))
        keys.cell(row, 2).value = round(column_sums.get(column, 0), 2)
        keys.cell(row, 3).value = "Nombre d'apprentis"
        keys.cell(row, 4).value = "Au prorata des apprentis de chaque ligne"
        row += 1
    for ref, value in (overrides or {}).items():
        sheet, cell = ref.split("!")
        wb[sheet][cell].value = value
        if isinstance(value, Text):
            wb[sheet][cell].data_type = "s"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
