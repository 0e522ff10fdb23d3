"""nameko entrypoints of the files service: parse, call one use case, relay
its events, return JSON.

Run: ``nameko run --config deploy/nameko.yaml files.service`` with
``libs/kit`` and ``services/files`` on ``PYTHONPATH``. Configuration (nameko
config key or environment variable): ``FILES_DB_URL``, ``FILES_MAX_BYTES``
(default 10 MiB); storage ``FILES_STORAGE`` = ``local`` (default, folder
``FILES_DIR``, default ``<DATA_DIR or data>/files``) or ``s3`` (``S3_BUCKET``,
``S3_ENDPOINT_URL``, ``S3_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``); XLSX limits ``FILES_XLSX_*`` (see ``check_xlsx``);
the malware scanner ``FILES_CLAMD`` (``files.scanner``; unset: no scan, a
WARNING at start and ``scanner: disabled`` in ``health``); the sweep's grace
``FILES_SWEEP_GRACE_HOURS`` (``use_cases.sweep``); ``FILES_SCAN_WAIT_BYTES``
(documents larger than this may be answered before their malware verdict,
quarantined until it comes: ``use_cases.store_file``).

Every upload, whatever its slot, goes through one policy (``files.policy``)
before anything is written: the same hostile file gets the same code in
every slot, and a refused file leaves no record, no blob and no event.

Every RPC reads the caller from the context data (``kit.context``). Error
codes common to all: a file the caller may not read is ``NotFound
files.not_found`` exactly as if it did not exist. Every error code, its
class and French message: ``files.problems``.
"""

from __future__ import annotations

import logging

import eventlet
from nameko.timer import timer

from files import use_cases
from files.models import Outbox
from files.scanner import ScannerProvider
from files.settings import Settings
from files.storage import Storage
from files.verdicts import DeferredVerdicts

# imported as a module, not by name: `nameko run files.service` takes every
# class of this module that has entrypoints for a service, ServiceBase included
from kit import service as kit_service
from kit.cpu import heavy  # XLSX checks in a process pool: light calls keep their latency
from kit.db import Database
from kit.entrypoints import rpc

log = logging.getLogger(__name__)


class FilesService(kit_service.ServiceBase):
    name = "files"
    db = Database("files")
    storage = Storage()
    settings = Settings()
    scanner = ScannerProvider()
    later = DeferredVerdicts()
    outbox_model = Outbox
    upload_methods = ("store_file", "store_xlsx", "check_xlsx")  # kit.metrics

    @rpc
    def health(self) -> dict:
        """Readiness, plus the malware scanner's state: ``scanner`` is ``ok``,
        ``unreachable`` (uploads answer 503 until it is back) or ``disabled``
        (``FILES_CLAMD`` unset: uploads are not scanned)."""
        result = super().health()
        if not self.scanner.enabled:
            state = "disabled"
        else:
            state = "ok" if self.scanner.ping() else "unreachable"
        return dict(result, scanner=state)

    @timer(interval=3600)
    def sweep(self) -> None:
        """Hourly: soft-deleted records and unreferenced blobs older than the
        grace period go, with their bytes (``use_cases.sweep``; one replica
        at a time)."""
        removed = use_cases.sweep(self.db, self.storage, grace=self.settings.sweep_grace)
        if not removed.get("skipped"):
            log.info(
                "files sweep: %d records and %d blobs removed",
                removed["files"],
                removed["blobs"],
                extra=removed,
            )

    @timer(interval=30)
    def rescan_pending(self) -> None:
        """Every 30 s: files still waiting for their malware verdict after a
        minute are scanned again (``use_cases.rescan_pending``)."""
        counts = use_cases.rescan_pending(self.db, self.storage, self.scanner)
        if counts["scanned"] or counts["unavailable"]:
            log.info(
                "files pending verdicts: %d scanned, %d infected",
                counts["scanned"],
                counts["infected"],
                extra=counts,
            )

    @rpc
    def store_file(self, meta: dict, content_b64: str) -> dict:
        """Checks an upload against its slot's policy, then stores it; the same
        bytes are kept once, each call is a new file.

        Input: ``meta = {kind, name, content_type?, owner_org_id?}`` with kind in
        ``habilitation``, ``registration_other`` (registration documents),
        ``attachment`` (a survey's « Pièces à fournir »), ``survey_form`` (a
        transmitted survey form), ``certification_list`` (an imported
        certification list), ``annex`` (a carte request's annexes),
        ``catalogue`` (the carte diploma catalogue); ``content_b64`` the bytes in
        standard base64. The name is reduced to a safe base name (at most 200
        characters) whose extension matches the decided type; ``content_type``
        is ignored: the type is decided from the bytes (``files.policy``;
        per kind: ``files.domain.policy.SLOTS``).

        Who: anonymous callers store registration kinds only, with no owner;
        members of an organisation store for it (the default owner) or for one
        they manage; agency and system callers store anything for anyone.

        Output: ``{id, kind, name, content_type, size, sha256, owner_org_id,
        created_at, scan_status}`` (ISO-8601 UTC; ``content_type`` the decided
        one; plus ``sheets`` for a workbook). ``scan_status``: ``clean``,
        ``not_scanned`` (no scanner configured) or ``pending``: a document of
        the kinds people open later (``habilitation``, ``registration_other``,
        ``attachment``, ``annex``) larger than ``FILES_SCAN_WAIT_BYTES`` whose
        scan had not ended when its checks had is stored quarantined; its
        verdict is recorded when it comes (infected: the bytes are deleted
        and reads answer ``files.malware_detected``). Emits
        ``files.file_stored``.

        Errors, the same for a case whatever the kind: ``InvalidInput``
        ``files.invalid_meta``, ``files.invalid_kind``, ``files.invalid_name``,
        ``files.invalid_owner``, ``files.invalid_encoding``, ``files.empty``,
        ``files.too_large`` (``FILES_MAX_BYTES``), ``files.malware_detected``,
        ``files.type_not_allowed`` (the bytes are no type this kind takes),
        ``files.xlsx.*`` (an office file refused by the OOXML checks: see
        ``check_xlsx``), ``files.pdf.encrypted``, ``files.pdf.active_content``,
        ``files.pdf.embedded_file``, ``files.pdf.corrupt``; ``Unavailable``
        ``files.scanner_unavailable`` (503, ``retry_after``: clamd configured
        but without a verdict); ``Unauthenticated`` for an anonymous caller
        storing another kind; ``Forbidden`` ``files.owner_forbidden`` for an
        owner the caller may not store for.
        """
        result = use_cases.store_file(
            self.db,
            self.storage,
            self.caller,
            meta,
            content_b64,
            max_bytes=self.settings.max_bytes,
            limits=self.settings.xlsx,
            scanner=self.scanner,
            offload=heavy,
            spawn=eventlet.spawn,
            later=self.later,
            wait_bytes=self.settings.scan_wait_bytes,
        )
        self.publish_pending()
        return result

    @rpc
    def store_xlsx(self, meta: dict, content_b64: str) -> dict:
        """Checks an XLSX upload (docs/architecture.md §4), then stores it; THE way to
        store any spreadsheet another service will parse.

        Input and who: as ``store_file``; the same policy, narrowed to
        workbooks (the content type is always the XLSX one). Order: meta, then
        who may store, then the bytes; the checks run before anything is
        written, so a refused file leaves no record, no blob and no event.

        Output: as ``store_file`` plus ``sheets`` (sheet names, workbook order).
        Emits ``files.file_stored``.

        Errors: those of ``store_file`` (any other type is
        ``files.type_not_allowed``), with the XLSX codes of ``check_xlsx``.
        """
        result = use_cases.store_xlsx(
            self.db,
            self.storage,
            self.caller,
            meta,
            content_b64,
            limits=self.settings.xlsx,
            scanner=self.scanner,
            offload=heavy,
            spawn=eventlet.spawn,
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
        - ``files.xlsx.too_many_entries`` (``FILES_XLSX_MAX_ENTRIES``
          [500, set in ``kit/limits.py``]);
        - ``files.xlsx.unsafe_entry_name`` (absolute, ``..``, backslash,
          control character); ``files.xlsx.duplicate_entry``;
        - ``files.xlsx.zip_bomb``: declared uncompressed total over
          ``FILES_XLSX_MAX_UNCOMPRESSED_BYTES`` [60 MiB, set in ``kit/limits.py``], or an entry over
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

        Same access and errors as ``get_file_info``, plus: a file still
        waiting for its malware verdict is scanned first; ``InvalidInput``
        ``files.malware_detected`` for an infected one (its bytes are gone);
        ``Unavailable`` ``files.scanner_unavailable`` when a pending file
        cannot be scanned now.
        """
        return use_cases.get_file(self.db, self.storage, self.caller, file_id, scanner=self.scanner)

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
    def discard_file(self, file_id: str) -> dict:
        """Forgets for good a file stored moments ago and then refused by the
        service it was for (no soft-deleted row, bytes gone when unshared).

        Who: agency and system callers, or the user who stored it.
        Idempotent. Output: ``{id, discarded: true}``. Errors: ``NotFound``
        ``files.not_found`` (a file of someone else).
        """
        return use_cases.discard_file(self.db, self.storage, self.caller, file_id)

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
