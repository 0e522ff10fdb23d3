"""Every error code is in its service's catalogue (kit.catalogue), and nothing else is.

Each service lists the codes it raises in ``services/<svc>/<svc>/problems.py``.
This test fails when a code

- is raised in a service's code (``services/<svc>/<svc>/**.py``: a string
  literal of the form ``^[a-z_]+\\.[a-z_.]+$`` given to an error class, to a
  catalogue call — ``problems.error``, ``problem`` —, to ``InvalidInput.fields``,
  ``raise_if_any``, a local ``_one_error`` / ``_raise`` / ``Problems.add``,
  directly or through an UPPER_CASE module constant; a catalogue call's first
  argument may also be a generic code such as ``invalid_input``), or documented
  after ``Errors`` in a docstring of its ``service.py``, without being in that
  service's catalogue;
- is listed in ``gateway/gateway/openapi.yaml`` without being in any
  catalogue, nor raised by the gateway (``gateway/gateway/**.py``, whose
  ``errors.CATALOGUE`` holds the gateway's own codes: ``request.*``,
  ``rate_limited``, ``partner.key_missing``…), nor by kit (``forbidden.agency_only``
  of ``Caller.require_agency``, ``service.database_unavailable``, ``rpc.*``…);
- is in a catalogue but raised nowhere in its service (a dead entry), unless the
  entry is marked ``dynamic`` (its code is chosen at run time).

Ownership: a code belongs to the catalogue of every service that raises it,
whatever its prefix (identity raises ``carte.identifier_taken``). Codes raised
by kit or by the gateway stay where they are raised (see above).

Covered services: ``SERVICES`` below (all five). ``UNCONVERTED`` would list a service
whose raise sites do not use a catalogue yet (none now).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from kit.catalogue import Catalogue

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("notify", "carte", "identity", "files", "survey")
# services whose raise sites do not use their catalogue yet: their codes are
# neither checked nor required (their prefix is then tolerated in openapi.yaml)
UNCONVERTED: tuple[str, ...] = ()
# the catalogue module of each service: ``<svc>.problems`` unless named here
# (survey.domain.problems already exists)
CATALOGUE_MODULES = {"survey": "survey.errors"}

CODE = re.compile(r"^[a-z_]+\.[a-z_.]+$")
GENERIC_CODE = re.compile(r"^[a-z_]+(?:\.[a-z_.]+)*$")
CATALOGUE_CALLS = {"error", "problem"}
# callables whose literal code arguments are raised codes
ERROR_CLASSES = {
    "ServiceError",
    "InvalidInput",
    "NotFound",
    "Conflict",
    "Forbidden",
    "Unauthenticated",
    "TooManyRequests",
    "BadRequest",
    "Gone",
    "Unavailable",
    "Rejected",  # files.domain.meta: a refusal turned into InvalidInput
}
RAISING = ERROR_CLASSES | {
    "error",
    "problem",
    "fields",
    "raise_if_any",
    "_one_error",
    "_raise",
    "_require",
    "add",
    "Refused",  # survey.domain.attachments: a refused attachment
    "Denied",  # files.domain.access: a refusal turned into Unauthenticated or Forbidden
}
# dotted words of openapi.yaml that are no error codes
NOT_CODES = {
    "e.g",
    "partner.events",  # the partners' AMQP exchange
    "scope.sirets",  # a field path
    "identity.organisation_validated",  # event types
    "survey.response_submitted",
    "survey.survey_blocked",
    "survey.survey_unblocked",
    "fr.formation.survey.response_submitted",
}
NOT_CODE_PREFIXES = ("details.", "data.")
OPENAPI_WORD = re.compile(r"(?<![\w./@{-])([a-z_]+(?:\.[a-z_]+)+)(?!\.?[\w/(*-])")


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _constants(tree: ast.AST) -> dict[str, str]:
    """UPPER_CASE names bound to a code literal (``SCOPE_INVALID = "partner.…"``)."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.isupper() and isinstance(value, str):
                    if CODE.match(value):
                        found[target.id] = value
    return found


def _literal_codes(
    tree: ast.AST, callables: set[str] | None, constants: dict[str, str] | None = None
) -> set[str]:
    """Codes passed to ``callables`` (any call when None), as literals or
    through ``constants``."""
    constants = constants or {}
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if callables is not None and name not in callables:
            continue
        args = list(node.args) + [k.value for k in node.keywords if k.arg == "code"]
        for index, arg in enumerate(args):
            value = None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                value = arg.value
            elif isinstance(arg, ast.Name | ast.Attribute):
                value = constants.get(_name(arg))
            if value is None:
                continue
            # ``problems.error`` / ``problem``, not a local ``error(field, message)``
            catalogue_call = isinstance(node.func, ast.Attribute) or name == "problem"
            generic = index == 0 and name in CATALOGUE_CALLS and catalogue_call
            if CODE.match(value) or (generic and GENERIC_CODE.match(value)):
                found.add(value)
    return found


def _sources(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("**/*.py")) if "migrations" not in p.parts]


def raised_codes(service: str) -> set[str]:
    trees = [
        ast.parse(path.read_text())
        for path in _sources(ROOT / "services" / service / service)
        if path != _catalogue_path(service)
    ]
    constants: dict[str, str] = {}
    for tree in trees:
        constants |= _constants(tree)
    codes: set[str] = set()
    for tree in trees:
        codes |= _literal_codes(tree, RAISING, constants)
    return codes


def documented_codes(service: str) -> set[str]:
    """Codes named after ``Errors`` in the docstrings of ``service.py``."""
    tree = ast.parse((ROOT / "services" / service / service / "service.py").read_text())
    codes: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module):
            continue
        doc = ast.get_docstring(node) or ""
        for part in re.split(r"\bErrors?\b", doc)[1:]:
            part = re.split(r"\b(?:Emits|emits|Returns|Runs)\b", part)[0]
            words = {w for w in OPENAPI_WORD.findall(part) if CODE.match(w)}
            codes |= {w for w in words if not w.startswith(NOT_CODE_PREFIXES)}
    return codes - {_catalogue_module(service)}


def _catalogue_module(service: str) -> str:
    return CATALOGUE_MODULES.get(service, f"{service}.problems")


def _catalogue_path(service: str) -> Path:
    return ROOT / "services" / service / (_catalogue_module(service).replace(".", "/") + ".py")


def catalogue(service: str) -> Catalogue:
    return importlib.import_module(_catalogue_module(service)).CATALOGUE


def _any_codes(folder: Path) -> set[str]:
    """Every string literal of the form of a code in ``folder``'s sources."""
    codes: set[str] = set()
    for path in _sources(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if CODE.match(node.value):
                    codes.add(node.value)
    return codes


def kit_codes() -> set[str]:
    return _any_codes(ROOT / "libs" / "kit" / "kit")


def gateway_codes() -> set[str]:
    return _any_codes(ROOT / "gateway" / "gateway")


def unconverted_codes() -> set[str]:
    codes: set[str] = set()
    for service in UNCONVERTED:
        codes |= _any_codes(ROOT / "services" / service / service)
    return codes


@pytest.mark.parametrize("service", SERVICES)
def test_every_raised_code_is_catalogued(service):
    missing = raised_codes(service) - catalogue(service).codes
    where = _catalogue_module(service)
    assert not missing, f"raised by {service} but not in {where}: {sorted(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_documented_code_is_catalogued(service):
    known = catalogue(service).codes | kit_codes()
    missing = documented_codes(service) - known
    assert not missing, f"{service}/service.py documents uncatalogued codes: {sorted(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_no_dead_entry(service):
    raised = raised_codes(service)
    dead = {e.code for e in catalogue(service) if not e.dynamic and e.code not in raised}
    assert not dead, f"{_catalogue_module(service)} lists codes raised nowhere: {sorted(dead)}"


def test_every_openapi_code_is_catalogued():
    text = (ROOT / "gateway" / "gateway" / "openapi.yaml").read_text()
    words = {w for w in OPENAPI_WORD.findall(text) if CODE.match(w)}
    words = {w for w in words if w not in NOT_CODES and not w.startswith(NOT_CODE_PREFIXES)}
    known = kit_codes() | gateway_codes() | unconverted_codes()
    for service in SERVICES:
        known |= catalogue(service).codes
    missing = words - known
    assert not missing, f"openapi.yaml lists codes no catalogue holds: {sorted(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_entries_build_their_error(service):
    for entry in catalogue(service):
        assert entry.code.split(".")[0], entry
        assert issubclass(entry.error_class, Exception)
        assert isinstance(entry.template, str) and entry.template, entry.code
