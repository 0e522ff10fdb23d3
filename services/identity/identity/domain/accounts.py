"""The states of an account, from its dates."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from identity.models import User


def user_state(user: User) -> str:
    if user.deactivated_at:
        return "deactivated"
    if user.rejected_at:
        return "rejected"
    if not user.email_confirmed_at:
        return "not_activated"
    if not user.validated_at:
        return "awaiting_validation"
    return "validated"
