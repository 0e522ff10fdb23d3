"""nameko entrypoints of the files service: parse, call one use case, relay
its events, return JSON.

Run: ``nameko run --config deploy/nameko.yaml files.service`` with
``libs/kit`` and ``services/files`` on ``PYTHONPATH``. Configuration (nameko
config key or environment variable): ``FILES_DB_URL``, ``FILES_DIR``
(default ``<DATA_DIR or data>/files``), ``FILES_MAX_BYTES`` (default 10 MiB).

Every RPC reads the caller from the context data (``kit.context``). Error
codes common to all: a file the caller may not read is ``NotFound
files.not_found`` exactly as if it did not exist.
"""

from __future__ import annotations

from nameko.rpc import rpc

from files import use_cases
from files.models import Outbox
from files.settings import Settings
from files.storage import Storage

# imported as a module, not by name: `nameko run files.service` takes every
# class of this module that has entrypoints for a service, ServiceBase included
from kit import service as kit_service
from kit.db import Database


class FilesService(kit_service.ServiceBase):
    name = "files"
    db = Database("files")
    storage = Storage()
    settings = Settings()
    outbox_model = Outbox

    @rpc
    def store_file(self, meta: dict, content_b64: str) -> dict:
        """Stores an upload; the same bytes are kept once, each call is a new file.

        Input: ``meta = {kind, name, content_type?, owner_org_id?}`` with kind in
        ``habilitation``, ``registration_other`` (registration documents),
        ``attachment``, ``survey_form``, ``annex``; ``content_b64`` the bytes in
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
