"""Accounts of the carte des formations (Carif-Oref guide, sections 1 and 2).

A re-export, for the service and the modules that use ``identity.carte``:
the pure rules are ``identity.domain.carte_accounts``, the queries
``identity.repository``, the answers ``identity.schemas.account_dict``, the
rights, administration and sign-in ``identity.use_cases.carte_accounts``.
"""

from identity.domain.carte_accounts import (
    EMAIL_PREFIX,
    KIND_LABELS,
    KINDS,
    LABEL_MAX,
    MAX_MEMBERS,
    SCOPES,
    USER_ROLE,
    is_valid_uai,
    login_key,
    new_password,
    normalise_identifier,
    parse_account,
    signed_in_as,
)
from identity.models import CarteAccount
from identity.schemas import ROLES, account_dict
from identity.use_cases.carte_accounts import (
    RESET_SENT,
    acting_admin,
    authenticate,
    create_account,
    ensure_account,
    get_account,
    is_carte_admin,
    list_accounts,
    me,
    regenerate_password,
    request_password_reset,
    send_password_reset,
    signed_in,
    update_account,
)

__all__ = [
    "EMAIL_PREFIX",
    "KINDS",
    "KIND_LABELS",
    "LABEL_MAX",
    "MAX_MEMBERS",
    "RESET_SENT",
    "ROLES",
    "SCOPES",
    "USER_ROLE",
    "CarteAccount",
    "account_dict",
    "acting_admin",
    "authenticate",
    "create_account",
    "ensure_account",
    "get_account",
    "is_carte_admin",
    "is_valid_uai",
    "list_accounts",
    "login_key",
    "me",
    "new_password",
    "normalise_identifier",
    "parse_account",
    "regenerate_password",
    "request_password_reset",
    "send_password_reset",
    "signed_in",
    "signed_in_as",
    "update_account",
]
