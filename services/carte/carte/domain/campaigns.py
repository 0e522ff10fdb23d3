"""The campaigns' calendar: days are counted in Paris time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def today(now: dt.datetime) -> dt.date:
    return now.astimezone(PARIS).date()
