"""Monthly digest rules ("first tuesday of each month at 09:00 America/Port_of_Spain") and their next times.

The `schedule` package only knows seconds to weeks, so monthly rules are computed here with zoneinfo. A rule
is a wall-clock time in a named zone, so a digest keeps arriving at 09:00 local across daylight-saving
changes. Three calendar cases are settled on purpose:

- "day 29", "day 30" or "day 31" in a shorter month falls on that month's last day (31 -> 28 or 29 February),
  so a month is never skipped.
- A wall time that does not exist on a spring-forward day is moved forward to the first valid time after the
  gap: 02:30 on a day whose clocks jump from 02:00 to 03:00 runs at 03:00 local.
- A wall time that happens twice on a fall-back day runs at its first occurrence (fold=0, the offset in force
  before the change), so subscribers get it once and as early as the rule allows.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

EXAMPLES = (
    '"first tuesday of each month at 09:00 America/Port_of_Spain", '
    '"last friday of each month at 17:30 America/Sao_Paulo" or '
    '"day 15 of each month at 10:00 UTC"'
)

ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_TIME_AND_ZONE = r"at\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})\s+(?P<zone>\S+)"
_FORMS = (
    re.compile(r"(?P<ordinal>[a-z]+)\s+(?P<weekday>[a-z]+)\s+of\s+(?:each|every)\s+month\s+" + _TIME_AND_ZONE),
    re.compile(r"day\s+(?P<day>\d{1,2})\s+(?:of\s+(?:each|every)\s+month\s+)?" + _TIME_AND_ZONE),
    re.compile(r"(?:each|every)\s+month\s+on\s+day\s+(?P<day>\d{1,2})\s+" + _TIME_AND_ZONE),
)


class RuleError(ValueError):
    """A recurrence rule that cannot be read; the message says what a valid rule looks like."""


@dataclass(frozen=True)
class Rule:
    """Either a day of the month (`day`) or the n-th weekday of the month (`ordinal` + `weekday`).

    `ordinal` is 1-4, or -1 for the last; `weekday` is 0 for Monday as in `datetime.weekday()`.
    """

    hour: int
    minute: int
    timezone: str
    day: int | None = None
    ordinal: int | None = None
    weekday: int | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise RuleError(f"time {self.hour:02d}:{self.minute:02d} is not a time of day; use 00:00 to 23:59")
        if self.day is not None:
            if self.ordinal is not None or self.weekday is not None:
                raise RuleError(f"give either a day of the month or an ordinal weekday, not both, e.g. {EXAMPLES}")
            if not 1 <= self.day <= 31:
                raise RuleError(f"day {self.day} is not a day of the month; use 1 to 31 (29-31 mean the last "
                                f"day in shorter months)")
        elif self.ordinal is None or self.weekday is None:
            raise RuleError(f"give either a day of the month or an ordinal and a weekday, e.g. {EXAMPLES}")
        elif self.ordinal not in ORDINALS.values() or not 0 <= self.weekday <= 6:
            raise RuleError(f"ordinal {self.ordinal} / weekday {self.weekday} out of range; "
                            f"use ordinal 1-4 or -1 (last) and weekday 0 (Monday) to 6 (Sunday)")
        _zone(self.timezone)

    def __str__(self) -> str:
        if self.day is not None:
            when = f"day {self.day}"
        else:
            ordinal = next(name for name, number in ORDINALS.items() if number == self.ordinal)
            when = f"{ordinal} {WEEKDAYS[self.weekday]}"
        return f"{when} of each month at {self.hour:02d}:{self.minute:02d} {self.timezone}"

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment`, as an aware UTC datetime."""
        month = _month_index(self._local(moment)) - 1  # a month early: a shifted time may cross a month end
        while True:
            occurrence = self._occurrence(month)
            if occurrence > moment:
                return occurrence
            month += 1

    def previous_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest occurrence at or before `moment` (aware UTC); None only before the calendar's year 1."""
        month = _month_index(self._local(moment)) + 1
        while month >= 12:  # month index 12 is January of year 1, the first month datetime can hold
            occurrence = self._occurrence(month)
            if occurrence <= moment:
                return occurrence
            month -= 1
        return None

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"moment {moment.isoformat()} has no time zone; pass an aware datetime "
                             f"(e.g. clock.now())")
        return moment.astimezone(_zone(self.timezone))

    def _occurrence(self, month: int) -> datetime:
        year, month_number = divmod(month, 12)
        month_number += 1
        first_weekday, days_in_month = calendar.monthrange(year, month_number)
        if self.day is not None:
            day = min(self.day, days_in_month)
        elif self.ordinal == -1:
            last_weekday = (first_weekday + days_in_month - 1) % 7
            day = days_in_month - (last_weekday - self.weekday) % 7
        else:
            day = 1 + (self.weekday - first_weekday) % 7 + 7 * (self.ordinal - 1)
        wall = datetime(year, month_number, day, self.hour, self.minute)
        return _wall_to_utc(wall, _zone(self.timezone))


def parse_rule(text: str) -> Rule:
    """Read a rule written by a person: case and extra spaces do not matter."""
    cleaned = " ".join(text.split())
    lowered = cleaned.lower()
    for form in _FORMS:
        match = form.fullmatch(lowered)
        if match:
            break
    else:
        raise RuleError(f"cannot read the rule {text!r}; write it like {EXAMPLES}")
    fields = match.groupdict()
    zone = _zone_name(cleaned[match.start("zone"):match.end("zone")])
    hour, minute = int(fields["hour"]), int(fields["minute"])
    if fields.get("day") is not None:
        return Rule(hour=hour, minute=minute, timezone=zone, day=int(fields["day"]))
    if fields["ordinal"] not in ORDINALS:
        raise RuleError(f"unknown ordinal {fields['ordinal']!r} in {text!r}; use first, second, third, fourth "
                        f"or last, e.g. {EXAMPLES}")
    if fields["weekday"] not in WEEKDAYS:
        raise RuleError(f"unknown weekday {fields['weekday']!r} in {text!r}; use monday to sunday, "
                        f"e.g. {EXAMPLES}")
    return Rule(hour=hour, minute=minute, timezone=zone,
                ordinal=ORDINALS[fields["ordinal"]], weekday=WEEKDAYS.index(fields["weekday"]))


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """Resolve a local wall time: the first occurrence if it is ambiguous, the end of the gap if it is skipped."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: fold=1 reads the wall time with the offset after the change, which lands before the gap.
    before_gap = int(wall.replace(tzinfo=zone, fold=1).astimezone(timezone.utc).timestamp())
    after_gap = int(first.timestamp())
    while after_gap - before_gap > 1:  # find the first second whose wall time is at or past `wall`
        middle = (before_gap + after_gap) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            after_gap = middle
        else:
            before_gap = middle
    return datetime.fromtimestamp(after_gap, timezone.utc)


@lru_cache(maxsize=None)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"unknown time zone {name!r}; use an IANA name such as America/Sao_Paulo, "
                        f"America/Port_of_Spain or UTC") from None


@lru_cache(maxsize=None)
def _zones_by_lowercase() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def _zone_name(written: str) -> str:
    """The IANA spelling of a zone written in any case ("america/sao_paulo" -> "America/Sao_Paulo")."""
    canonical = _zones_by_lowercase().get(written.lower(), written)
    _zone(canonical)
    return canonical
