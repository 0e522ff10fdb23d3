"""The files service in a real container, over real RabbitMQ, on a real
PostgreSQL database migrated from empty; bytes on local disk, and on an
S3-compatible server (moto) for the S3 backend."""

from __future__ import annotations

import base64

import pytest
from nameko.events import event_handler
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter
from sqlalchemy import text

from files import corpus
from files.service import FilesService
from files.storage import s3_client
from kit.context import CALLER_KEY, Caller
from kit.db import make_engine
from kit.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from kit.migrate import upgrade

pytestmark = pytest.mark.integration

MANAGER_A = Caller(user_id="u-a", org_id="org-a", roles=("manager",))
PLAN = corpus.pdf(payload=b"plan")
USER_B = Caller(user_id="u-b", org_id="org-b", roles=("user",))
ANONYMOUS = Caller()


@pytest.fixture
def files_db(pg_database):
    url = pg_database("files")
    upgrade("files", url)
    return url


@pytest.fixture
def storage_config():
    """Local disk; overridden where a test runs the service on S3."""
    return {}


@pytest.fixture
def files_config(rabbit_config, files_db, storage_config, tmp_path):
    base = dict(
        rabbit_config,
        FILES_DB_URL=files_db,
        FILES_DIR=str(tmp_path / "blobs"),
        FILES_MAX_BYTES=1024,
    )
    return {**base, **storage_config}


@pytest.fixture
def files_service(container_factory, files_config):
    container = container_factory(FilesService, files_config)
    container.start()
    yield container
    container.stop()


class Listener:
    """Stands for any service that reacts to new files."""

    name = "files_listener"

    @event_handler("files", "file_stored")
    def on_file_stored(self, payload):
        return payload


@pytest.fixture
def rpc_as(rabbit_config, files_service):
    proxies = []

    def make(caller: Caller):
        proxy = ClusterRpcProxy(
            rabbit_config, timeout=10, context_data={CALLER_KEY: caller.to_header()}
        )
        proxies.append(proxy)
        return proxy.start().files

    yield make
    for proxy in proxies:
        proxy.stop()


def test_a_file_goes_in_and_comes_back_over_the_bus(rpc_as, tmp_path):
    files = rpc_as(MANAGER_A)
    assert files.health() == {"service": "files", "status": "ok", "scanner": "disabled"}
    stored = files.store_file(
        {"kind": "annex", "name": "plan.pdf", "content_type": "application/pdf"},
        base64.b64encode(PLAN).decode(),
    )
    assert stored["owner_org_id"] == "org-a"
    got = files.get_file(stored["id"])
    assert base64.b64decode(got["content_b64"]) == PLAN
    sha = stored["sha256"]
    blob = tmp_path / "blobs" / sha[:2] / sha[2:4] / sha
    assert blob.read_bytes() == PLAN
    assert files.delete_file(stored["id"])["id"] == stored["id"]
    assert not blob.exists()
    with pytest.raises(NotFound):
        files.get_file_info(stored["id"])


def test_another_organisation_gets_a_typed_not_found(rpc_as):
    stored = rpc_as(MANAGER_A).store_file(
        {"kind": "annex", "name": "plan.pdf"}, base64.b64encode(PLAN).decode()
    )
    with pytest.raises(NotFound) as caught:
        rpc_as(USER_B).get_file(stored["id"])
    assert caught.value.code == "files.not_found"
    assert caught.value.message == "Fichier introuvable."


@pytest.mark.parametrize(
    "caller, meta, content, error, code",
    [
        (MANAGER_A, {"kind": "annex", "name": "a"}, "x" * 4000, InvalidInput, "files.too_large"),
        (
            MANAGER_A,
            {"kind": "annex", "name": "a", "owner_org_id": "org-b"},
            "eA==",
            Forbidden,
            "files.owner_forbidden",
        ),
        (ANONYMOUS, {"kind": "annex", "name": "a"}, "eA==", Unauthenticated, "unauthenticated"),
    ],
)
def test_refusals_arrive_typed(rpc_as, caller, meta, content, error, code):
    with pytest.raises(error) as caught:
        rpc_as(caller).store_file(meta, content)
    assert caught.value.code == code


def test_a_stored_file_is_announced_on_the_bus_without_its_bytes(
    rpc_as, container_factory, rabbit_config
):
    listener = container_factory(Listener, rabbit_config)
    listener.start()
    with entrypoint_waiter(listener, "on_file_stored", timeout=10) as result:
        stored = rpc_as(MANAGER_A).store_file(
            {"kind": "annex", "name": "a.pdf"}, base64.b64encode(PLAN).decode()
        )
    payload = result.get()
    assert payload["file_id"] == stored["id"]
    assert payload["sha256"] == stored["sha256"]
    assert "content_b64" not in payload and "event_id" in payload


MS_REL = "http://schemas.microsoft.com/office/2006/relationships"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def count_rows(url: str, table: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def test_a_macro_workbook_is_refused_typed_across_the_bus_and_nothing_is_kept(
    rpc_as, xlsx, files_db, tmp_path
):
    macro = xlsx.with_workbook_relationship(xlsx.valid(), f"{MS_REL}/vbaProject", "vbaProject.bin")
    macro = xlsx.rezip(macro, add=[("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 macro")])
    with pytest.raises(InvalidInput) as caught:
        rpc_as(MANAGER_A).store_xlsx({"kind": "survey_form", "name": "Compte cfa.xlsx"}, b64(macro))
    assert caught.value.code == "files.xlsx.macro"
    assert caught.value.message == (
        "Le fichier contient des macros : enregistrez-le au format .xlsx (classeur Excel sans "
        "macros)."
    )
    assert count_rows(files_db, "files") == count_rows(files_db, "blobs") == 0
    assert count_rows(files_db, "outbox") == 0
    assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))


def test_a_valid_workbook_is_stored_and_can_be_checked_again(rpc_as, xlsx):
    data = xlsx.valid()
    # FILES_MAX_BYTES (1 KiB here) does not apply: the XLSX cap does
    assert len(data) > 1024
    files = rpc_as(MANAGER_A)
    stored = files.store_xlsx({"kind": "certification_list", "name": "Liste.xlsx"}, b64(data))
    assert stored["sheets"] == ["Certifications"]
    assert stored["content_type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert base64.b64decode(files.get_file(stored["id"])["content_b64"]) == data
    assert files.check_xlsx(stored["id"]) == {
        "file_id": stored["id"],
        "ok": True,
        "sheets": ["Certifications"],
        "size": len(data),
    }
    with pytest.raises(NotFound):
        rpc_as(USER_B).check_xlsx(stored["id"])


def test_an_entity_bomb_is_refused_and_the_service_keeps_answering(rpc_as, xlsx):
    bomb = xlsx.rezip(xlsx.valid(), replace={"xl/worksheets/sheet1.xml": xlsx.billion_laughs()})
    files = rpc_as(MANAGER_A)
    with pytest.raises(InvalidInput) as caught:
        files.store_xlsx({"kind": "survey_form", "name": "lol.xlsx"}, b64(bomb))
    assert caught.value.code == "files.xlsx.xml_entities"
    assert files.health()["status"] == "ok"


class TestOnS3:
    @pytest.fixture
    def storage_config(self, s3_config):
        return s3_config

    def test_the_service_keeps_its_bytes_in_the_bucket(self, files_config, rpc_as, xlsx, tmp_path):
        files = rpc_as(MANAGER_A)
        data = xlsx.valid()
        stored = files.store_xlsx({"kind": "survey_form", "name": "Compte cfa.xlsx"}, b64(data))
        client = s3_client(files_config)
        bucket, sha = files_config["S3_BUCKET"], stored["sha256"]
        got = client.get_object(Bucket=bucket, Key=f"{sha[:2]}/{sha[2:4]}/{sha}")
        assert got["Body"].read() == data
        assert not (tmp_path / "blobs").exists()
        assert base64.b64decode(files.get_file(stored["id"])["content_b64"]) == data
        assert files.check_xlsx(stored["id"])["ok"] is True
        files.delete_file(stored["id"])
        assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


class TestWithAScanner:
    """With a real clamd: a large document answered before its verdict gets
    it recorded by the service itself, moments later."""

    @pytest.fixture
    def storage_config(self, clamd):
        return {
            "FILES_CLAMD": clamd.address,
            "FILES_MAX_BYTES": 2_000_000,
            "FILES_SCAN_WAIT_BYTES": 64 * 1024,
        }

    def test_a_large_infected_annex_is_answered_then_its_bytes_are_deleted(self, rpc_as):
        import random
        import time

        files = rpc_as(MANAGER_A)
        assert files.health()["scanner"] == "ok"
        payload = random.Random(5).randbytes(1_000_000)
        infected = corpus.pdf(payload=payload + corpus.EICAR)
        clean = corpus.pdf(payload=payload)
        answers = [
            files.store_file({"kind": "annex", "name": "plan.pdf"}, base64.b64encode(d).decode())
            for d in (clean, infected)
        ]
        deadline = time.monotonic() + 10
        states = []
        while time.monotonic() < deadline:
            states = [files.get_file_info(a["id"])["scan_status"] for a in answers]
            if "pending" not in states:
                break
            time.sleep(0.05)
        assert states == ["clean", "infected"]
        assert base64.b64decode(files.get_file(answers[0]["id"])["content_b64"]) == clean
        with pytest.raises(InvalidInput) as caught:
            files.get_file(answers[1]["id"])
        assert caught.value.code == "files.malware_detected"

    def test_a_small_infected_file_is_refused_over_the_bus(self, rpc_as):
        with pytest.raises(InvalidInput) as caught:
            rpc_as(MANAGER_A).store_file(
                {"kind": "annex", "name": "a.pdf"}, base64.b64encode(corpus.EICAR).decode()
            )
        assert caught.value.code == "files.malware_detected"
