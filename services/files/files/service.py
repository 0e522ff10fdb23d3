"""nameko entrypoints of the files service: parse, call one use case, relay
its events, return JSON.

Run: ``nameko run --config deploy/nameko.yaml files.service`` with
``libs/kit`` and ``services/files`` on ``PYTHONPATH``. Configuration (nameko
config key or environment variable): ``FILES_DB_URL``, ``FILES_MAX_BYTES``
(default 10 MiB); storage ``FILES_STORAGE`` = ``local`` (default, folder
``FILES_DIR``, default ``<DATA_DIR or data>/files``) or ``s3`` (``S3_BUCKET``,
``S3_ENDPOINT_URL``, ``S3_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``); XLSX limits ``FILES_XLSX_*`` (see ``check_xlsx``).

Every RPC reads the caller from the context data (``kit.context``). Error
codes common to all: a file the caller may not read is ``NotFound
files.not_found`` exactly as if it did not exist.
"""

from __future__ import annotations

from files import use_cases
from files.models import Outbox
from files.settings import Settings
from files.storage import Storage

# imported as a module, not by name: `nameko run files.service` takes every
# class of this module that has entrypoints for a service, ServiceBase included
from kit import service as kit_service
from kit.cpu import heavy  # XLSX checks in a process pool: light calls keep their latency
from kit.db import Database
from kit.entrypoints import rpc


class FilesService(kit_service.ServiceBase):
    name = "files"
    db = Database("files")
    storage = Storage()
    settings = Settings()
    outbox_model = Outbox
    upload_methods = ("store_file", "store_xlsx", "check_xlsx")  # kit.metrics

    @rpc
    def store_file(self, meta: dict, content_b64: str) -> dict:
        """Stores an upload; the same bytes are kept once, each call is a new file.

        Input: ``meta = {kind, name, content_type?, owner_org_id?}`` with kind in
        ``habilitation``, ``registration_other`` (registration documents),
        ``attachment`` (a survey's « Pièces à fournir »), ``survey_form`` (a
        transmitted survey form), ``certification_list`` (an imported
        certification list), ``annex`` (a carte request's annexes),
        ``catalogue`` (the carte diploma catalogue); ``content_b64`` the bytes in
        standard base64. The name is reduced to a safe base name (at most 200
        characters); ``content_type`` defaults to ``application/octet-stream``.

        Who: anonymous callers store registration kinds only, with no owner;
        members of an organisation store for it (the default owner) or for one
        they manage; agency and system callers store anything for anyone.

        Output: ``{id, kind, name, content_type, size, sha256, owner_org_id,
        created_at}`` (ISO-8601 UTC). Emits ``files.file_stored``.

        Errors: ``InvalidInput`` ``files.invalid_meta``, ``files.invalid_kind``,
        ``files.invalid_name``, ``files.invalid_content_type``,
        ``files.invalid_owner``, ``files.invalid_encoding``, ``files.empty``,
        ``files.too_large`` (``FILES_MAX_BYTES``); ``Unauthenticated`` for an
        anonymous caller storing another kind; ``Forbidden``
        ``files.owner_forbidden`` for an owner the caller may not store for.
        """
        result = use_cases.store_file(
            self.db, self.storage, self.caller, meta, content_b64, max_bytes=self.settings.max_bytes
        )
        self.publish_pending()
        return result

    @rpc
    def store_xlsx(self, meta: dict, content_b64: str) -> dict:
        """Checks an XLSX upload (DESIGN.md §4), then stores it; THE way to
        store any spreadsheet another service will parse.

        Input and who: as ``store_file`` (the name must end in ``.xlsx``; the
        content type is always set to the XLSX one). Order: meta, then who may
        store, then the bytes; the checks run before anything is written, so a
        refused file leaves no record, no blob and no event.

        Output: as ``store_file`` plus ``sheets`` (sheet names, workbook order).
        Emits ``files.file_stored``.

        Errors: those of ``store_file`` except ``files.empty`` and
        ``files.too_large``, replaced by the XLSX codes; ``InvalidInput`` with
        one code per rejection (see ``check_xlsx``).
        """
        result = use_cases.store_xlsx(
            self.db,
            self.storage,
            self.caller,
            meta,
            content_b64,
            limits=self.settings.xlsx,
            offload=heavy,
        )
        self.publish_pending()
        return result

    @rpc
    def check_xlsx(self, file_id: str) -> dict:
        """Runs the XLSX safety checks on a stored file.

        Input: the id of a file the caller may read (as ``get_file_info``).
        Output: ``{file_id, ok: True, sheets: [names in workbook order], size}``.

        Errors: ``NotFound`` ``files.not_found`` (unknown, deleted or not
        readable); ``InvalidInput`` with a French message saying what to fix,
        details (``entry``, ``sheet``, ``cell``/``where``, ``limit``) where
        they help, and one of these codes (limits: nameko config or
        environment, defaults in brackets):

        - ``files.xlsx.empty``; ``files.xlsx.too_large``
          (``FILES_XLSX_MAX_BYTES`` [10 MiB]);
        - ``files.xlsx.not_xlsx``: the name does not end in ``.xlsx``, or the
          bytes are not a zip (a renamed PDF, an old .xls);
        - ``files.xlsx.corrupt``: truncated or unreadable zip or XML,
          encrypted entry, unusual compression;
        - ``files.xlsx.too_many_entries`` (``FILES_XLSX_MAX_ENTRIES`` [2,000]);
        - ``files.xlsx.unsafe_entry_name`` (absolute, ``..``, backslash,
          control character); ``files.xlsx.duplicate_entry``;
        - ``files.xlsx.zip_bomb``: declared uncompressed total over
          ``FILES_XLSX_MAX_UNCOMPRESSED_BYTES`` [200 MiB], or an entry over
          1 MiB compressed more than ``FILES_XLSX_MAX_RATIO`` [100] times;
        - ``files.xlsx.macro``; ``files.xlsx.external_link`` (links to other
          workbooks, data connections, externally fetched targets; hyperlinks
          are fine); ``files.xlsx.embedded_object`` (OLE, ActiveX, embedded
          files);
        - ``files.xlsx.xml_entities``: a DTD or entity in any XML part;
        - ``files.xlsx.missing_part``: ``[Content_Types].xml``,
          ``xl/workbook.xml`` or a listed worksheet missing;
        - ``files.xlsx.too_many_sheets`` (``FILES_XLSX_MAX_SHEETS`` [50]);
        - ``files.xlsx.too_many_rows`` (``FILES_XLSX_MAX_ROWS`` [100,000]) and
          ``files.xlsx.too_many_columns`` (``FILES_XLSX_MAX_COLUMNS`` [200]):
          a cell, row, dimension, merged range or hyperlink range beyond;
        - ``files.xlsx.cell_too_long`` (``FILES_XLSX_MAX_CELL_CHARS`` [32,767]).
        """
        return use_cases.check_xlsx(
            self.db,
            self.storage,
            self.caller,
            file_id,
            limits=self.settings.xlsx,
            offload=heavy,
        )

    @rpc
    def get_file_info(self, file_id: str) -> dict:
        """A file's description, without its bytes.

        Readable by the agency and system callers; registration documents by
        them only; any other file by members of its owner organisation (own or
        managed). Output: as ``store_file``. Errors: ``NotFound``
        ``files.not_found`` (unknown, deleted or not readable).
        """
        return use_cases.get_file_info(self.db, self.caller, file_id)

    @rpc
    def get_file(self, file_id: str) -> dict:
        """A file's description plus ``content_b64`` (its bytes in base64).

        Same access and errors as ``get_file_info``.
        """
        return use_cases.get_file(self.db, self.storage, self.caller, file_id)

    @rpc
    def delete_file(self, file_id: str) -> dict:
        """Soft-deletes a file; its bytes go when no live file uses them.

        Who: agency and system callers, or a manager or user of the owner
        organisation. Idempotent. Output: ``{id, deleted_at}``. Errors:
        ``NotFound`` ``files.not_found`` (unknown or not readable);
        ``Forbidden`` ``files.delete_forbidden`` (readable, but the caller has
        no role that may delete).
        """
        return use_cases.delete_file(self.db, self.storage, self.caller, file_id)

    @rpc
    def attach_owner(self, file_ids: list, owner_org_id: str) -> dict:
        """Gives files stored anonymously (at registration) their organisation.

        Who: agency and system callers. All or nothing; files already owned by
        ``owner_org_id`` are left as they are. Output: ``{file_ids,
        owner_org_id}``. Errors: ``Unauthenticated`` / ``Forbidden``
        ``files.forbidden``; ``InvalidInput`` ``files.invalid_input`` (fields
        ``file_ids``: a list of 1 to 100 ids, ``owner_org_id``); ``NotFound``
        ``files.not_found`` (details ``file_ids``: unknown or deleted);
        ``Conflict`` ``files.owner_conflict`` (details ``file_ids``: owned by
        another organisation).
        """
        return use_cases.attach_owner(self.db, self.caller, file_ids, owner_org_id)
