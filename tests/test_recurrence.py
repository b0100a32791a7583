"""Monthly digest rules: reading them, and their exact times across month ends, leap years and DST."""

from datetime import datetime, timedelta, timezone

import pytest

from newsletter.clock import parse_utc, utc_iso
from newsletter.recurrence import Rule, RuleError, parse_rule


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


def next_times(rule: Rule, start: datetime, count: int = 24) -> list[str]:
    times, moment = [], start
    for _ in range(count):
        moment = rule.next_after(moment)
        times.append(utc_iso(moment))
    return times


PORT_OF_SPAIN_FIRST_TUESDAY = [  # UTC-4 all year: always 13:00Z
    "2026-01-06T13:00:00Z", "2026-02-03T13:00:00Z", "2026-03-03T13:00:00Z", "2026-04-07T13:00:00Z",
    "2026-05-05T13:00:00Z", "2026-06-02T13:00:00Z", "2026-07-07T13:00:00Z", "2026-08-04T13:00:00Z",
    "2026-09-01T13:00:00Z", "2026-10-06T13:00:00Z", "2026-11-03T13:00:00Z", "2026-12-01T13:00:00Z",
    "2027-01-05T13:00:00Z", "2027-02-02T13:00:00Z", "2027-03-02T13:00:00Z", "2027-04-06T13:00:00Z",
    "2027-05-04T13:00:00Z", "2027-06-01T13:00:00Z", "2027-07-06T13:00:00Z", "2027-08-03T13:00:00Z",
    "2027-09-07T13:00:00Z", "2027-10-05T13:00:00Z", "2027-11-02T13:00:00Z", "2027-12-07T13:00:00Z",
]

# Brazil's summer time: 2017-10-15 to 2018-02-17 and 2018-11-04 to 2019-02-16 at UTC-2, otherwise UTC-3.
SAO_PAULO_LAST_FRIDAY = [
    "2017-07-28T20:30:00Z", "2017-08-25T20:30:00Z", "2017-09-29T20:30:00Z", "2017-10-27T19:30:00Z",
    "2017-11-24T19:30:00Z", "2017-12-29T19:30:00Z", "2018-01-26T19:30:00Z", "2018-02-23T20:30:00Z",
    "2018-03-30T20:30:00Z", "2018-04-27T20:30:00Z", "2018-05-25T20:30:00Z", "2018-06-29T20:30:00Z",
    "2018-07-27T20:30:00Z", "2018-08-31T20:30:00Z", "2018-09-28T20:30:00Z", "2018-10-26T20:30:00Z",
    "2018-11-30T19:30:00Z", "2018-12-28T19:30:00Z", "2019-01-25T19:30:00Z", "2019-02-22T20:30:00Z",
    "2019-03-29T20:30:00Z", "2019-04-26T20:30:00Z", "2019-05-31T20:30:00Z", "2019-06-28T20:30:00Z",
]

MEXICO_CITY_DAY_31 = [  # UTC-6 all year since 2022; short months fall on their last day, 2028 is a leap year
    "2027-01-31T15:00:00Z", "2027-02-28T15:00:00Z", "2027-03-31T15:00:00Z", "2027-04-30T15:00:00Z",
    "2027-05-31T15:00:00Z", "2027-06-30T15:00:00Z", "2027-07-31T15:00:00Z", "2027-08-31T15:00:00Z",
    "2027-09-30T15:00:00Z", "2027-10-31T15:00:00Z", "2027-11-30T15:00:00Z", "2027-12-31T15:00:00Z",
    "2028-01-31T15:00:00Z", "2028-02-29T15:00:00Z", "2028-03-31T15:00:00Z", "2028-04-30T15:00:00Z",
    "2028-05-31T15:00:00Z", "2028-06-30T15:00:00Z", "2028-07-31T15:00:00Z", "2028-08-31T15:00:00Z",
    "2028-09-30T15:00:00Z", "2028-10-31T15:00:00Z", "2028-11-30T15:00:00Z", "2028-12-31T15:00:00Z",
]

UTC_DAY_1 = [
    "2026-01-01T14:00:00Z", "2026-02-01T14:00:00Z", "2026-03-01T14:00:00Z", "2026-04-01T14:00:00Z",
    "2026-05-01T14:00:00Z", "2026-06-01T14:00:00Z", "2026-07-01T14:00:00Z", "2026-08-01T14:00:00Z",
    "2026-09-01T14:00:00Z", "2026-10-01T14:00:00Z", "2026-11-01T14:00:00Z", "2026-12-01T14:00:00Z",
    "2027-01-01T14:00:00Z", "2027-02-01T14:00:00Z", "2027-03-01T14:00:00Z", "2027-04-01T14:00:00Z",
    "2027-05-01T14:00:00Z", "2027-06-01T14:00:00Z", "2027-07-01T14:00:00Z", "2027-08-01T14:00:00Z",
    "2027-09-01T14:00:00Z", "2027-10-01T14:00:00Z", "2027-11-01T14:00:00Z", "2027-12-01T14:00:00Z",
]

# The second Sunday of March is the spring-forward day in both years: 02:30 does not exist, 03:00 EDT is used.
NEW_YORK_SECOND_SUNDAY_0230 = [
    "2026-01-11T07:30:00Z", "2026-02-08T07:30:00Z", "2026-03-08T07:00:00Z", "2026-04-12T06:30:00Z",
    "2026-05-10T06:30:00Z", "2026-06-14T06:30:00Z", "2026-07-12T06:30:00Z", "2026-08-09T06:30:00Z",
    "2026-09-13T06:30:00Z", "2026-10-11T06:30:00Z", "2026-11-08T07:30:00Z", "2026-12-13T07:30:00Z",
    "2027-01-10T07:30:00Z", "2027-02-14T07:30:00Z", "2027-03-14T07:00:00Z", "2027-04-11T06:30:00Z",
    "2027-05-09T06:30:00Z", "2027-06-13T06:30:00Z", "2027-07-11T06:30:00Z", "2027-08-08T06:30:00Z",
    "2027-09-12T06:30:00Z", "2027-10-10T06:30:00Z", "2027-11-14T07:30:00Z", "2027-12-12T07:30:00Z",
]

SCHEDULES = [
    ("first tuesday of each month at 09:00 America/Port_of_Spain", utc(2026, 1, 1), PORT_OF_SPAIN_FIRST_TUESDAY),
    ("last friday of each month at 17:30 America/Sao_Paulo", utc(2017, 7, 1), SAO_PAULO_LAST_FRIDAY),
    ("day 31 of each month at 09:00 America/Mexico_City", utc(2027, 1, 1), MEXICO_CITY_DAY_31),
    ("day 1 at 14:00 UTC", utc(2026, 1, 1), UTC_DAY_1),
    ("second sunday of each month at 02:30 America/New_York", utc(2026, 1, 1), NEW_YORK_SECOND_SUNDAY_0230),
]


@pytest.mark.parametrize(("text", "start", "expected"), SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_next_24_times_are_exactly_the_expected_utc_instants(text, start, expected):
    assert next_times(parse_rule(text), start) == expected


@pytest.mark.parametrize(("text", "start", "expected"), SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_previous_at_or_before_walks_the_same_times_backwards(text, start, expected):
    rule = parse_rule(text)
    times = [parse_utc(t) for t in expected]
    for earlier, later in zip(times, times[1:]):
        assert rule.previous_at_or_before(later) == later
        assert rule.previous_at_or_before(later - timedelta(seconds=1)) == earlier
    assert rule.previous_at_or_before(times[0] - timedelta(seconds=1)) <= start


def test_next_after_an_occurrence_is_the_following_month_not_the_same_instant():
    rule = parse_rule("day 1 at 14:00 UTC")
    assert rule.next_after(utc(2026, 3, 1, 14, 0)) == utc(2026, 4, 1, 14, 0)
    assert rule.next_after(utc(2026, 3, 1, 13, 59)) == utc(2026, 3, 1, 14, 0)


def test_times_are_aware_utc_whatever_zone_the_moment_is_given_in():
    rule = parse_rule("day 1 at 14:00 UTC")
    moment_in_lima = datetime(2026, 2, 28, 23, 0, tzinfo=timezone(timedelta(hours=-5)))  # 04:00Z on 1 March
    assert rule.next_after(moment_in_lima) == utc(2026, 3, 1, 14, 0)
    assert rule.next_after(moment_in_lima).tzinfo is timezone.utc


def test_ambiguous_fall_back_time_runs_at_its_first_occurrence():
    rule = parse_rule("first sunday of each month at 01:30 America/New_York")
    assert rule.next_after(utc(2026, 10, 15)) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, not 01:30 EST
    rule = parse_rule("third saturday of each month at 23:30 America/Sao_Paulo")
    assert rule.next_after(utc(2018, 2, 1)) == utc(2018, 2, 18, 1, 30)  # 23:30 -02, before clocks went back


def test_skipped_time_at_a_midnight_spring_forward_moves_to_the_end_of_the_gap():
    rule = parse_rule("third sunday of each month at 00:30 America/Sao_Paulo")
    assert rule.next_after(utc(2017, 10, 1)) == utc(2017, 10, 15, 3, 0)  # 01:00 -02: midnight did not exist


def test_a_naive_moment_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="no time zone"):
        parse_rule("day 1 at 14:00 UTC").next_after(datetime(2026, 1, 1))


ACCEPTED_FORMS = [
    ("first tuesday of each month at 09:00 America/Port_of_Spain",
     Rule(hour=9, minute=0, timezone="America/Port_of_Spain", ordinal=1, weekday=1)),
    ("second monday of each month at 08:00 UTC", Rule(hour=8, minute=0, timezone="UTC", ordinal=2, weekday=0)),
    ("third wednesday of every month at 12:15 America/Bogota",
     Rule(hour=12, minute=15, timezone="America/Bogota", ordinal=3, weekday=2)),
    ("fourth thursday of each month at 07:05 America/Lima",
     Rule(hour=7, minute=5, timezone="America/Lima", ordinal=4, weekday=3)),
    ("last friday of each month at 17:30 America/Sao_Paulo",
     Rule(hour=17, minute=30, timezone="America/Sao_Paulo", ordinal=-1, weekday=4)),
    ("day 1 at 14:00 UTC", Rule(hour=14, minute=0, timezone="UTC", day=1)),
    ("day 31 of each month at 09:00 America/Mexico_City",
     Rule(hour=9, minute=0, timezone="America/Mexico_City", day=31)),
    ("every month on day 15 at 10:00 Europe/Madrid", Rule(hour=10, minute=0, timezone="Europe/Madrid", day=15)),
    ("  LAST   Sunday of Each Month   at 9:00   america/port_of_spain ",
     Rule(hour=9, minute=0, timezone="America/Port_of_Spain", ordinal=-1, weekday=6)),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED_FORMS, ids=[f[0].strip() for f in ACCEPTED_FORMS])
def test_every_accepted_form_parses_and_its_canonical_text_parses_back(text, expected):
    rule = parse_rule(text)
    assert rule == expected
    assert parse_rule(str(rule)) == rule


def test_canonical_text_spells_out_the_rule():
    assert str(parse_rule("every month on day 15 at 10:00 Europe/Madrid")) == \
        "day 15 of each month at 10:00 Europe/Madrid"
    assert str(parse_rule("LAST friday of each month at 7:30 america/sao_paulo")) == \
        "last friday of each month at 07:30 America/Sao_Paulo"


@pytest.mark.parametrize("text", [
    "",
    "monthly",
    "first tuesday at 09:00 UTC",
    "first tuesday of each month 09:00 UTC",
    "day 15 of each month at 10:00",
])
def test_unreadable_rule_is_refused_with_an_example_of_a_valid_one(text):
    with pytest.raises(RuleError, match='"first tuesday of each month at 09:00 America/Port_of_Spain"'):
        parse_rule(text)


@pytest.mark.parametrize(("text", "complaint"), [
    ("first tuesday of each month at 09:00 Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
    ("fifth monday of each month at 09:00 UTC", "unknown ordinal 'fifth'.*or last"),
    ("first funday of each month at 09:00 UTC", "unknown weekday 'funday'"),
    ("day 32 of each month at 09:00 UTC", "day 32 is not a day of the month; use 1 to 31"),
    ("day 0 at 09:00 UTC", "day 0 is not a day of the month"),
    ("day 1 at 24:00 UTC", "time 24:00 is not a time of day"),
    ("day 1 at 09:60 UTC", "time 09:60 is not a time of day"),
])
def test_rule_with_a_wrong_part_is_refused_naming_that_part(text, complaint):
    with pytest.raises(RuleError, match=complaint):
        parse_rule(text)


def test_rule_built_directly_must_pick_day_or_weekday():
    with pytest.raises(RuleError, match="not both"):
        Rule(hour=9, minute=0, timezone="UTC", day=1, ordinal=1, weekday=0)
    with pytest.raises(RuleError, match="ordinal and a weekday"):
        Rule(hour=9, minute=0, timezone="UTC", ordinal=1)
