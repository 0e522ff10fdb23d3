"""Use cases on an in-memory database and a temporary folder.

Covers deduplication, limits, the access matrix (a file that may not be read
does not exist), deletion of shared bytes and owner attachment."""

from __future__ import annotations

import base64
import hashlib

import pytest
from sqlalchemy import func, select

from files import corpus, use_cases
from files.models import Blob, Outbox, StoredFile
from files.storage import LocalDiskStorage
from kit import outbox
from kit.context import Caller
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

ANONYMOUS = Caller()
MANAGER_A = Caller(user_id="u-manager-a", org_id="org-a", roles=("manager",))
USER_A = Caller(user_id="u-user-a", org_id="org-a", roles=("user",))
USER_B = Caller(user_id="u-user-b", org_id="org-b", roles=("user",))
OG_MANAGER = Caller(user_id="u-og", org_id="org-og", roles=("manager",), managed_org_ids=("org-a",))
NO_ORG = Caller(user_id="u-lost", roles=("user",))
VIEWER_A = Caller(user_id="u-viewer-a", org_id="org-a", roles=())
AGENCY = Caller(user_id="u-agency", roles=("agency_admin",))
SYSTEM = Caller(roles=("system",))

MAX = 1024
PDF = corpus.pdf(payload=b"contenu")
XLSX = corpus.xlsx()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
def store(session, storage):
    def store(
        caller=MANAGER_A,
        data=None,
        kind="attachment",
        name="a.pdf",
        content_type="application/pdf",
        owner=None,
        max_bytes=MAX,
    ):
        if data is None:  # a workbook where only workbooks go
            data = XLSX if kind in ("survey_form", "certification_list") else PDF
            max_bytes = max(max_bytes, len(data))
        meta = {"kind": kind, "name": name, "content_type": content_type}
        if owner is not None:
            meta["owner_org_id"] = owner
        return use_cases.store_file(session, storage, caller, meta, b64(data), max_bytes=max_bytes)

    return store


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_a_stored_file_comes_back_with_its_bytes_and_description(session, storage, store):
    stored = store(name="../Bilan 2024.pdf")
    assert stored["name"] == "Bilan 2024.pdf"
    assert stored["owner_org_id"] == "org-a"
    assert stored["size"] == len(PDF)
    assert stored["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert stored["created_at"].endswith("+00:00")
    got = use_cases.get_file(session, storage, USER_A, stored["id"])
    assert base64.b64decode(got["content_b64"]) == PDF
    assert {k: v for k, v in got.items() if k != "content_b64"} == stored
    assert use_cases.get_file_info(session, USER_A, stored["id"]) == stored


def test_the_same_bytes_are_kept_once_but_each_upload_is_a_file(session, storage, store):
    first = store(name="un.pdf")
    second = store(caller=USER_B, name="deux.pdf")
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"]
    assert count(session, StoredFile) == 2
    assert count(session, Blob) == 1
    blob_files = [p for p in (storage.root).rglob("*") if p.is_file()]
    assert [p.name for p in blob_files] == [first["sha256"]]


def test_storing_announces_the_file_without_its_bytes_and_without_an_outbox_row(session, store):
    stored = store(data=corpus.pdf(payload=b"secret-bytes"))
    # files.file_stored has no consumer (kit.events.UNCONSUMED): announced after commit
    assert session.scalars(select(Outbox)).all() == []
    ((event_type, payload),) = outbox.take_committed(session)
    assert event_type == "file_stored"
    assert payload["file_id"] == stored["id"]
    assert payload["owner_org_id"] == "org-a"
    assert "secret-bytes" not in str(payload)
    assert b64(b"secret-bytes") not in str(payload)


@pytest.mark.parametrize(
    "data, kind, content_type, code",
    [
        (b"x" * (MAX + 1), "attachment", "application/pdf", "files.too_large"),
        (b"", "attachment", "application/pdf", "files.empty"),
        (b"x", "passport", "application/pdf", "files.invalid_kind"),
        (
            b"<html><script>alert(1)</script>",
            "attachment",
            "application/pdf",
            "files.type_not_allowed",
        ),
    ],
)
def test_invalid_uploads_are_refused_and_nothing_is_kept(
    session, storage, store, data, kind, content_type, code
):
    with pytest.raises(InvalidInput) as caught:
        store(data=data, kind=kind, content_type=content_type)
    assert caught.value.code == code
    assert count(session, StoredFile) == 0
    assert not storage.root.exists() or not any(storage.root.rglob("*"))


def test_the_declared_content_type_is_ignored_for_the_one_read_from_the_bytes(store):
    stored = store(content_type="text/html", name="page.html")
    assert stored["content_type"] == "application/pdf"
    assert stored["name"] == "page.pdf"


def test_malformed_base64_is_refused(session, storage):
    with pytest.raises(InvalidInput) as caught:
        use_cases.store_file(
            session, storage, MANAGER_A, {"kind": "annex", "name": "a"}, "@@@@", max_bytes=MAX
        )
    assert caught.value.code == "files.invalid_encoding"


def test_the_too_large_error_states_the_limit(store):
    with pytest.raises(InvalidInput) as caught:
        store(data=b"x" * 1537, max_bytes=1536)
    assert caught.value.code == "files.too_large"
    assert caught.value.message == "Le fichier dépasse la taille maximale de 1,5 Ko."


def test_a_failure_to_write_the_bytes_keeps_no_record(session, store, monkeypatch):
    def broken_put(self, sha256, data):
        raise OSError("disk full")

    monkeypatch.setattr(LocalDiskStorage, "put", broken_put)
    with pytest.raises(OSError):
        store()
    session.close()  # what the worker teardown does
    assert count(session, StoredFile) == 0
    assert count(session, Outbox) == 0
    assert outbox.take_committed(session) == []


def test_an_anonymous_caller_stores_registration_documents_without_owner(store):
    for kind in ("habilitation", "registration_other"):
        assert store(caller=ANONYMOUS, kind=kind)["owner_org_id"] is None


def test_an_anonymous_caller_cannot_store_other_kinds(store):
    with pytest.raises(Unauthenticated):
        store(caller=ANONYMOUS, kind="attachment")


def test_an_anonymous_caller_cannot_name_an_owner(store):
    with pytest.raises(Forbidden) as caught:
        store(caller=ANONYMOUS, kind="habilitation", owner="org-a")
    assert caught.value.code == "files.owner_forbidden"


def test_a_member_cannot_store_for_another_organisation(session, store):
    with pytest.raises(Forbidden) as caught:
        store(caller=USER_A, owner="org-b")
    assert caught.value.code == "files.owner_forbidden"
    assert count(session, StoredFile) == 0


def test_a_user_without_organisation_cannot_store(store):
    with pytest.raises(Forbidden):
        store(caller=NO_ORG)


def test_a_network_manager_stores_for_an_organisation_it_manages(store):
    assert store(caller=OG_MANAGER, owner="org-a")["owner_org_id"] == "org-a"
    assert store(caller=OG_MANAGER)["owner_org_id"] == "org-og"


@pytest.mark.parametrize("caller", [AGENCY, SYSTEM])
def test_agency_and_system_store_anything_for_anyone(store, caller):
    assert store(caller=caller, kind="survey_form", owner="org-b")["owner_org_id"] == "org-b"
    assert store(caller=caller, kind="annex")["owner_org_id"] is None


# who reads what: (caller, kind of a file owned by org-a, readable?)
READ_MATRIX = [
    (MANAGER_A, "attachment", True),
    (USER_A, "survey_form", True),
    (VIEWER_A, "annex", True),
    (OG_MANAGER, "attachment", True),
    (USER_B, "attachment", False),
    (ANONYMOUS, "attachment", False),
    (NO_ORG, "attachment", False),
    (AGENCY, "attachment", True),
    (SYSTEM, "attachment", True),
    (MANAGER_A, "habilitation", False),
    (USER_A, "registration_other", False),
    (ANONYMOUS, "habilitation", False),
    (AGENCY, "habilitation", True),
    (SYSTEM, "registration_other", True),
]


@pytest.mark.parametrize("caller, kind, readable", READ_MATRIX)
def test_access_matrix(session, storage, store, caller, kind, readable):
    file_id = store(caller=AGENCY, kind=kind, owner="org-a")["id"]
    for read in (
        lambda: use_cases.get_file_info(session, caller, file_id),
        lambda: use_cases.get_file(session, storage, caller, file_id),
    ):
        if readable:
            assert read()["id"] == file_id
        else:
            with pytest.raises(NotFound) as caught:
                read()
            assert (caught.value.code, caught.value.message) == (
                "files.not_found",
                "Fichier introuvable.",
            )


def test_an_unreadable_file_looks_exactly_like_a_missing_one(session, store):
    file_id = store(caller=USER_A)["id"]
    with pytest.raises(NotFound) as hidden:
        use_cases.get_file_info(session, USER_B, file_id)
    with pytest.raises(NotFound) as missing:
        use_cases.get_file_info(session, USER_B, "0" * 32)
    assert hidden.value.args == missing.value.args


def test_an_anonymous_upload_is_readable_by_the_agency_only(session, store):
    file_id = store(caller=ANONYMOUS, kind="habilitation")["id"]
    assert use_cases.get_file_info(session, AGENCY, file_id)["id"] == file_id
    for caller in (ANONYMOUS, USER_A):
        with pytest.raises(NotFound):
            use_cases.get_file_info(session, caller, file_id)


def test_a_deleted_file_is_gone_for_everyone(session, storage, store):
    file_id = store()["id"]
    use_cases.delete_file(session, storage, USER_A, file_id)
    for caller in (USER_A, AGENCY):
        with pytest.raises(NotFound):
            use_cases.get_file(session, storage, caller, file_id)


def test_bytes_stay_while_another_file_uses_them_and_go_with_the_last(session, storage, store):
    first, second = store(), store(caller=USER_B)
    use_cases.delete_file(session, storage, MANAGER_A, first["id"])
    assert storage.exists(first["sha256"])
    assert use_cases.get_file(session, storage, USER_B, second["id"])["size"] == first["size"]
    use_cases.delete_file(session, storage, USER_B, second["id"])
    assert not storage.exists(first["sha256"])


def test_storing_deleted_content_again_brings_its_bytes_back(session, storage, store):
    file_id = store()["id"]
    use_cases.delete_file(session, storage, USER_A, file_id)
    again = store()
    assert (
        base64.b64decode(use_cases.get_file(session, storage, USER_A, again["id"])["content_b64"])
        == PDF
    )


def test_deleting_twice_answers_the_same(session, storage, store):
    file_id = store()["id"]
    first = use_cases.delete_file(session, storage, USER_A, file_id)
    assert use_cases.delete_file(session, storage, USER_A, file_id) == first


def test_another_organisation_cannot_delete_and_learns_nothing(session, storage, store):
    file_id = store()["id"]
    with pytest.raises(NotFound):
        use_cases.delete_file(session, storage, USER_B, file_id)
    assert use_cases.get_file_info(session, USER_A, file_id)["id"] == file_id


def test_a_member_without_a_role_may_read_but_not_delete(session, storage, store):
    file_id = store()["id"]
    with pytest.raises(Forbidden) as caught:
        use_cases.delete_file(session, storage, VIEWER_A, file_id)
    assert caught.value.code == "files.delete_forbidden"


def test_members_cannot_delete_their_registration_documents_but_the_agency_can(
    session, storage, store
):
    file_id = store(caller=AGENCY, kind="habilitation", owner="org-a")["id"]
    with pytest.raises(NotFound):
        use_cases.delete_file(session, storage, MANAGER_A, file_id)
    assert use_cases.delete_file(session, storage, AGENCY, file_id)["id"] == file_id


def test_missing_bytes_read_as_not_found(session, storage, store):
    stored = store()
    storage.delete(stored["sha256"])
    with pytest.raises(NotFound):
        use_cases.get_file(session, storage, USER_A, stored["id"])


def test_registration_uploads_get_their_organisation_afterwards(session, store):
    ids = [
        store(caller=ANONYMOUS, kind="habilitation", data=corpus.pdf(payload=b"1"))["id"],
        store(caller=ANONYMOUS, kind="registration_other", data=corpus.pdf(payload=b"2"))["id"],
    ]
    result = use_cases.attach_owner(session, SYSTEM, ids + ids[:1], "org-a")
    assert result == {"file_ids": ids, "owner_org_id": "org-a"}
    assert {use_cases.get_file_info(session, AGENCY, i)["owner_org_id"] for i in ids} == {"org-a"}
    # still identity documents: the organisation itself does not read them
    with pytest.raises(NotFound):
        use_cases.get_file_info(session, MANAGER_A, ids[0])
    assert use_cases.attach_owner(session, AGENCY, ids, "org-a")["owner_org_id"] == "org-a"


@pytest.mark.parametrize("caller, error", [(ANONYMOUS, Unauthenticated), (MANAGER_A, Forbidden)])
def test_only_agency_and_system_attach_owners(session, store, caller, error):
    file_id = store(caller=ANONYMOUS, kind="habilitation")["id"]
    with pytest.raises(error):
        use_cases.attach_owner(session, caller, [file_id], "org-a")
    assert use_cases.get_file_info(session, AGENCY, file_id)["owner_org_id"] is None


def test_attaching_is_all_or_nothing(session, store):
    file_id = store(caller=ANONYMOUS, kind="habilitation")["id"]
    owned = store(caller=USER_B, data=corpus.pdf(payload=b"b"))["id"]
    with pytest.raises(NotFound) as missing:
        use_cases.attach_owner(session, SYSTEM, [file_id, "f" * 32], "org-a")
    assert missing.value.details == {"file_ids": ["f" * 32]}
    with pytest.raises(Conflict) as taken:
        use_cases.attach_owner(session, SYSTEM, [file_id, owned], "org-a")
    assert taken.value.code == "files.owner_conflict"
    assert taken.value.details == {"file_ids": [owned]}
    session.rollback()
    assert use_cases.get_file_info(session, AGENCY, file_id)["owner_org_id"] is None


@pytest.mark.parametrize(
    "file_ids, owner, fields",
    [
        ([], "org-a", {"file_ids"}),
        ("abc", "org-a", {"file_ids"}),
        (["abc"], "", {"owner_org_id"}),
        ([None], None, {"file_ids", "owner_org_id"}),
    ],
)
def test_attach_owner_checks_its_input(session, file_ids, owner, fields):
    with pytest.raises(InvalidInput) as caught:
        use_cases.attach_owner(session, SYSTEM, file_ids, owner)
    assert caught.value.code == "files.invalid_input"
    assert set(caught.value.details["fields"]) == fields
