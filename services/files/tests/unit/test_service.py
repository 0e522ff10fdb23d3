"""Entrypoints through nameko's ``worker_factory``: each calls its use case
with the worker's caller and relays the events after commit."""

from __future__ import annotations

import base64

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy.orm import sessionmaker

from files.corpus import pdf
from files.models import Base
from files.scanner import NoScanner
from files.service import FilesService
from files.settings import FilesSettings, load
from files.storage import LocalDiskStorage
from files.xlsx_safety import CONFIG_NAMES, XlsxLimits
from kit.context import Caller
from kit.db import make_engine
from kit.errors import InvalidInput, NotFound

PLAN = pdf(payload=b"plan")
MANAGER_A = Caller(user_id="u-a", org_id="org-a", roles=("manager",))
USER_B = Caller(user_id="u-b", org_id="org-b", roles=("user",))


@pytest.fixture
def service_for(tmp_path):
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = sessionmaker(engine, expire_on_commit=False, info={"service": "files"})()
    storage = LocalDiskStorage(tmp_path)

    def make(caller, max_bytes=1024):
        return worker_factory(
            FilesService,
            db=session,
            storage=storage,
            caller=caller,
            settings=FilesSettings(max_bytes=max_bytes),
            scanner=NoScanner(),
        )

    yield make
    session.close()
    engine.dispose()


def test_a_stored_file_is_announced_once_after_commit(service_for):
    service = service_for(MANAGER_A)
    stored = service.store_file(
        {"kind": "annex", "name": "plan.pdf"}, base64.b64encode(PLAN).decode()
    )
    service.announce.assert_called_once()
    event_type, payload = service.announce.call_args.args
    assert event_type == "file_stored"
    assert payload["file_id"] == stored["id"]
    assert "content_b64" not in payload
    service.relay_outbox()
    service.announce.assert_called_once()
    service.dispatch.assert_not_called()
    service.outbox_dispatch.assert_not_called()


def test_the_size_cap_comes_from_the_settings(service_for):
    with pytest.raises(InvalidInput) as caught:
        service_for(MANAGER_A, max_bytes=3).store_file(
            {"kind": "annex", "name": "plan.pdf"}, base64.b64encode(PLAN).decode()
        )
    assert caught.value.code == "files.too_large"


def test_reads_use_the_worker_caller(service_for):
    stored = service_for(MANAGER_A).store_file(
        {"kind": "annex", "name": "plan.pdf"}, base64.b64encode(PLAN).decode()
    )
    got = service_for(MANAGER_A).get_file(stored["id"])
    assert base64.b64decode(got["content_b64"]) == PLAN
    with pytest.raises(NotFound):
        service_for(USER_B).get_file_info(stored["id"])
    with pytest.raises(NotFound):
        service_for(USER_B).delete_file(stored["id"])
    assert service_for(MANAGER_A).delete_file(stored["id"])["id"] == stored["id"]


def test_settings_read_files_max_bytes(monkeypatch):
    monkeypatch.delenv("FILES_MAX_BYTES", raising=False)
    assert load({}).max_bytes == 10 * 1024 * 1024
    monkeypatch.setenv("FILES_MAX_BYTES", "2048")
    assert load({}).max_bytes == 2048
    assert load({"FILES_MAX_BYTES": 512}).max_bytes == 512
    with pytest.raises(ValueError):
        load({"FILES_MAX_BYTES": "0"})


def test_store_xlsx_checks_in_a_native_thread_then_stores_and_announces(service_for, xlsx):
    service = service_for(MANAGER_A, max_bytes=10)  # FILES_MAX_BYTES is not the XLSX cap
    stored = service.store_xlsx(
        {"kind": "certification_list", "name": "Liste-certifications.xlsx"},
        base64.b64encode(xlsx.valid()).decode(),
    )
    assert stored["sheets"] == ["Certifications"]
    service.announce.assert_called_once()
    assert service_for(MANAGER_A).check_xlsx(stored["id"]) == {
        "file_id": stored["id"],
        "ok": True,
        "sheets": ["Certifications"],
        "size": stored["size"],
    }


def test_a_refused_workbook_announces_nothing(service_for, xlsx):
    service = service_for(MANAGER_A)
    with pytest.raises(InvalidInput) as caught:
        service.store_xlsx(
            {"kind": "survey_form", "name": "f.xlsx"},
            base64.b64encode(xlsx.rezip(xlsx.valid(), add=[("xl/vbaProject.bin", b"x")])).decode(),
        )
    assert caught.value.code == "files.xlsx.macro"
    service.announce.assert_not_called()
    service.dispatch.assert_not_called()


def test_settings_read_the_xlsx_limits(monkeypatch):
    for key in CONFIG_NAMES.values():
        monkeypatch.delenv(key, raising=False)
    assert load({}).xlsx == XlsxLimits()
    monkeypatch.setenv("FILES_XLSX_MAX_ROWS", "5000")
    settings = load({"FILES_XLSX_MAX_COLUMNS": 30, "FILES_XLSX_MAX_BYTES": "2048"})
    assert (settings.xlsx.max_rows, settings.xlsx.max_columns) == (5000, 30)
    assert settings.xlsx.max_bytes == 2048 and settings.xlsx.max_ratio == 100
    with pytest.raises(ValueError):
        load({"FILES_XLSX_MAX_SHEETS": "-1"})
