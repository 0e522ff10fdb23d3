"""``gateway.uploads``, the one upload path: a missing file field and a file
over the cap are refused (422, the slot's code or ``files.too_large``)
before any RPC; bytes go to files through a store method only; documents go
back with a safe Content-Disposition."""

from __future__ import annotations

import base64
import io

import pytest

from gateway import uploads
from kit.limits import MAX_UPLOAD_BYTES
from tests.fakes import FakeRpc

TOO_LARGE = "Le fichier dépasse la taille maximale de 10 Mo."


@pytest.fixture
def fake():
    return FakeRpc()


@pytest.fixture
def app(make_app, fake):
    app = make_app()

    @app.post("/api/v1/_read")
    def read_one():
        upload = uploads.read(uploads.require_file("file", "test.file_missing", "Joignez-le."))
        return {"name": upload.name, "type": upload.content_type, "size": len(upload.content)}

    @app.post("/api/v1/_survey/<survey_id>")
    def store_one(survey_id):
        return uploads.store_survey_upload(fake, survey_id, "attachment")

    return app


def post(app, path, files=None, **kwargs):
    return app.test_client().post(
        path, data=files or {}, content_type="multipart/form-data", **kwargs
    )


def test_the_cap_is_the_shared_one():
    assert uploads.MAX_UPLOAD_BYTES is MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    assert uploads.TOO_LARGE == TOO_LARGE
    assert uploads.named_too_large("devis.pdf") == "« devis.pdf » dépasse 10 Mo."


def test_a_file_at_the_cap_is_read_with_its_name_and_type(app):
    content = b"%PDF-" + bytes(MAX_UPLOAD_BYTES - 5)
    response = post(app, "/api/v1/_read", {"file": (io.BytesIO(content), "devis.pdf", "x/y")})
    assert response.status_code == 200
    assert response.json == {"name": "devis.pdf", "type": "x/y", "size": MAX_UPLOAD_BYTES}


def test_a_file_over_the_cap_is_refused_as_too_large(app):
    big = {"file": (io.BytesIO(bytes(MAX_UPLOAD_BYTES + 1)), "gros.pdf")}
    response = post(app, "/api/v1/_read", big)
    assert response.status_code == 422
    body = response.json
    assert (body["code"], body["title"]) == ("files.too_large", TOO_LARGE)
    assert body["errors"] == {"file": [TOO_LARGE]}


@pytest.mark.parametrize(
    "files, content_type",
    [
        ({}, "multipart/form-data"),  # no field
        ({"file": (io.BytesIO(b"%PDF-1"), "")}, "multipart/form-data"),  # no file chosen
        ({"file": "not a file"}, "application/x-www-form-urlencoded"),  # not multipart
    ],
)
def test_a_missing_file_field_is_refused_with_the_slot_code(app, files, content_type):
    response = app.test_client().post("/api/v1/_read", data=files, content_type=content_type)
    assert response.status_code == 422
    assert (response.json["code"], response.json["title"]) == ("test.file_missing", "Joignez-le.")
    assert response.json["errors"] == {"file": ["Joignez-le."]}


def test_survey_uploads_are_refused_before_any_call(app, fake):
    none = post(app, "/api/v1/_survey/s1")
    assert none.status_code == 422 and none.json["code"] == "survey.file_missing"
    big = post(app, "/api/v1/_survey/s1", {"file": (io.BytesIO(bytes(MAX_UPLOAD_BYTES + 1)), "a")})
    assert big.status_code == 422 and big.json["code"] == "files.too_large"
    assert fake.calls == []


def test_a_survey_upload_is_planned_by_survey_then_stored_by_files(app, fake):
    fake.answers["survey.prepare_upload"] = {"store": "store_file", "meta": {"kind": "attachment"}}
    fake.answers["files.store_file"] = {"id": "f1"}
    response = post(app, "/api/v1/_survey/s1", {"file": (io.BytesIO(b"%PDF-1.7"), "a.pdf")})
    assert response.status_code == 200 and response.json == {"id": "f1"}
    (_, _, planned), (_, _, stored) = fake.calls
    assert planned[:2] == ("s1", "attachment") and planned[2]["size"] == 8
    assert stored == ({"kind": "attachment"}, base64.b64encode(b"%PDF-1.7").decode())


def test_only_a_store_method_of_files_can_be_called(fake):
    with pytest.raises(RuntimeError):
        uploads.store(fake.files, {}, b"x", "delete_file")
    assert fake.calls == []
    uploads.store(fake.files, {"kind": "catalogue"}, b"x", "store_xlsx")
    assert fake.methods() == ["files.store_xlsx"]


def test_documents_and_stored_files_are_sent_as_attachments(app):
    built = {"name": "Enquête.xlsx", "content_type": "text/csv", "content_b64": "eA=="}
    with app.test_request_context():
        document = uploads.send_document(built)
        inline = uploads.send_document(built, inline=True)
        stored = uploads.send_stored_file(built)
    assert document.mimetype == "text/csv" and document.headers["Cache-Control"] == "no-store"
    assert document.headers["Content-Disposition"].startswith('attachment; filename="Enquete.xlsx"')
    assert "filename*=UTF-8''Enqu%C3%AAte.xlsx" in document.headers["Content-Disposition"]
    assert inline.headers["Content-Disposition"].startswith('inline; filename="Enquete.xlsx"')
    assert stored.mimetype == "application/octet-stream" and stored.data == b"x"
    assert stored.headers["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in stored.headers
