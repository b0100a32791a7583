"""Segment expressions: how they are read, what they select in a real database, and saved segments
(how counts are kept: test_segment_counts.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from newsletter import segments, subscribers
from newsletter.cli import cli
from newsletter.clock import FakeClock
from newsletter.db import connect
from newsletter.segments import Segment, SegmentError, parse_segment

CLOCK = FakeClock(datetime(2026, 3, 1, tzinfo=timezone.utc))
HINT = "write terms like country:BB,TT interest:security language:es status:active (or @saved-name)"

# email, country, language, interests, status
PEOPLE = [
    ("a1@example.org", "BB", "en", ["security"], "active"),
    ("a2@example.org", "TT", "en", ["security", "policy"], "active"),
    ("a3@example.org", "TT", "es", ["training"], "active"),
    ("a4@example.org", "BB", "en", ["security"], "paused"),
    ("a5@example.org", "TT", "en", ["security"], "unsubscribed"),
    ("a6@example.org", "BR", "pt", ["security"], "active"),
    ("a7@example.org", "MX", "es", ["policy"], "active"),
    ("a8@example.org", "HT", "fr", ["infrastructure", "security"], "active"),
    ("a9@example.org", "MX", "es", ["security"], "pending"),
    ("a10@example.org", "AR", "es", ["grants"], "bounced"),
]


@pytest.fixture
def db(tmp_path):
    database = connect(tmp_path / "newsletter.db")
    for email, country, language, interests, status in PEOPLE:
        row = subscribers.add(database, email, country=country, language=language, interests=interests,
                              clock=CLOCK)
        subscribers.set_status(database, row["id"], status, clock=CLOCK)
    return database


# --- reading expressions -----------------------------------------------------------------------------


@pytest.mark.parametrize("expression, expected", [
    ("country:BB", Segment(countries={"BB"})),
    ("countries:BB,TT", Segment(countries={"BB", "TT"})),
    ("interest:security", Segment(interests={"security"})),
    ("interests:security,policy", Segment(interests={"security", "policy"})),
    ("language:es", Segment(languages={"es"})),
    ("lang:pt,fr", Segment(languages={"pt", "fr"})),
    ("status:paused", Segment(statuses={"paused"})),
    ("country:BB,TT interest:security language:en status:active",
     Segment(countries={"BB", "TT"}, interests={"security"}, languages={"en"}, statuses={"active"})),
])
def test_every_key_and_its_alias_is_read(db, expression, expected):
    assert parse_segment(expression, db) == expected


@pytest.mark.parametrize("expression, expected", [
    ("COUNTRY:bb,Tt", Segment(countries={"BB", "TT"})),
    ("Interest:DNSSEC,IXPs", Segment(interests={"security", "infrastructure"})),
    ("interest:Seguridad", Segment(interests={"security"})),
    ("LANG:Español,pt-BR", Segment(languages={"es", "pt"})),
    ("STATUS:Paused", Segment(statuses={"paused"})),
    ("country:Brasil,Haïti,trinidad,TTO", Segment(countries={"BR", "HT", "TT"})),
    ("country:BB,,TT,", Segment(countries={"BB", "TT"})),
])
def test_keys_and_values_are_read_in_any_case_and_spelling(db, expression, expected):
    assert parse_segment(expression, db) == expected


def test_a_segment_prints_as_its_canonical_expression(db):
    assert str(parse_segment("status:active lang:Español interest:dnssec country:tt,Barbados", db)) == \
        "country:BB,TT interest:security language:es status:active"
    assert str(Segment()) == "status:active"


@pytest.mark.parametrize("expression, message", [
    ("foo:bar", f"cannot read 'foo:bar' in segment 'foo:bar'; {HINT}"),
    ("country", f"cannot read 'country' in segment 'country'; {HINT}"),
    ("country: TT", f"cannot read 'country:' in segment 'country: TT'; {HINT}"),
    ("country:Atlantis", "in 'country:Atlantis': unknown country 'Atlantis'; use an ISO code such as TT or BR"),
    ("country:Barbadoss", "in 'country:Barbadoss': unknown country 'Barbadoss'; did you mean BB (Barbados)?"),
    ("interest:gardening",
     "in 'interest:gardening': unknown interest 'gardening'; known: infrastructure, security, policy, training, "
     "grants"),
    ("language:de", "in 'language:de': unsupported language 'de'; use one of en, es, pt, fr"),
    ("status:gone",
     "in 'status:gone': unknown status 'gone'; use one of pending, active, paused, unsubscribed, bounced, complained"),
    ("@nothing", "no saved segment named 'nothing'; `newsletter segments list` shows them"),
])
def test_an_unknown_key_or_value_is_refused_with_a_message_naming_it(db, expression, message):
    with pytest.raises(SegmentError) as error:
        parse_segment(expression, db)
    assert str(error.value) == message


def test_a_saved_segment_is_included_by_name(db):
    segments.save(db, "caribbean", "country:BB,TT", clock=CLOCK)
    assert parse_segment("@caribbean interest:security", db) == Segment(countries={"BB", "TT"},
                                                                        interests={"security"})


def test_a_saved_segment_narrows_the_terms_beside_it_in_either_order(db):
    """Terms are ANDed: @caribbean with country:TT,BR selects Trinidad and Tobago only, not Brazil too."""
    segments.save(db, "caribbean", "country:BB,TT", clock=CLOCK)
    assert parse_segment("country:TT,BR @caribbean", db).countries == {"TT"}
    assert parse_segment("@caribbean country:TT,BR", db).countries == {"TT"}


def test_a_saved_segment_that_excludes_the_other_terms_is_refused(db):
    segments.save(db, "caribbean", "country:BB,TT", clock=CLOCK)
    with pytest.raises(SegmentError) as error:
        parse_segment("country:BR @caribbean", db)
    assert str(error.value) == "@caribbean selects countries ['BB', 'TT'], which excludes ['BR']"


def test_a_saved_segment_cannot_refer_to_itself(db):
    with pytest.raises(SegmentError) as error:
        segments.save(db, "loop", "@loop country:TT", clock=CLOCK)
    assert str(error.value) == "saved segment @loop refers to itself"
    db.execute("INSERT INTO segments VALUES ('ping', '@pong', 'x'), ('pong', '@ping', 'x')")
    with pytest.raises(SegmentError) as error:
        parse_segment("@ping", db)
    assert str(error.value) == "saved segment @ping refers to itself"


def test_saved_names_need_a_database():
    with pytest.raises(SegmentError) as error:
        parse_segment("@caribbean")
    assert str(error.value) == "@caribbean: saved segments need a database"


# --- what a segment selects --------------------------------------------------------------------------


@pytest.mark.parametrize("expression, emails", [
    ("", ["a1", "a2", "a3", "a6", "a7", "a8"]),
    ("status:active", ["a1", "a2", "a3", "a6", "a7", "a8"]),
    ("country:BB,TT interest:security status:active", ["a1", "a2"]),
    ("country:BB,TT interest:security", ["a1", "a2"]),
    ("country:BB,TT interest:security status:active,paused", ["a1", "a2", "a4"]),
    ("language:es", ["a3", "a7"]),
    ("interest:security,policy", ["a1", "a2", "a6", "a7", "a8"]),
    ("interest:grants", []),
    ("status:unsubscribed", ["a5"]),
    ("status:pending,bounced", ["a9", "a10"]),
    ("country:HT lang:fr interest:infrastructure", ["a8"]),
])
def test_count_and_iter_subscribers_select_active_people_unless_a_status_is_given(db, expression, emails):
    expected = [f"{name}@example.org" for name in emails]
    assert segments.count(db, expression) == len(expected)
    assert [row["email"] for row in segments.iter_subscribers(db, expression, batch=2)] == expected


def test_iter_subscribers_follows_a_status_change_made_while_it_streams(db):
    seen = []
    for row in segments.iter_subscribers(db, "status:active", batch=2):
        seen.append(row["email"])
        if row["email"] == "a1@example.org":
            subscribers.unsubscribe(db, subscribers.get(db, "a7@example.org")["id"], clock=CLOCK)
    assert seen == ["a1@example.org", "a2@example.org", "a3@example.org", "a6@example.org", "a8@example.org"]


def test_count_accepts_a_parsed_segment_and_a_saved_name(db):
    segments.save(db, "caribbean-security", "country:BB,TT interest:security", clock=CLOCK)
    assert segments.count(db, parse_segment("country:BB,TT", db)) == 3
    assert segments.count(db, "@caribbean-security") == 2


# --- saved segments ----------------------------------------------------------------------------------


def test_segments_are_saved_canonical_listed_by_name_replaced_and_deleted(db):
    segments.save(db, "spanish", "lang:Español", clock=CLOCK)
    segments.save(db, "caribbean", "country:tt,bb interest:DNSSEC", clock=CLOCK)
    assert segments.saved_segments(db) == [
        {"name": "caribbean", "expression": "country:BB,TT interest:security", "created_at": "2026-03-01T00:00:00Z"},
        {"name": "spanish", "expression": "language:es", "created_at": "2026-03-01T00:00:00Z"},
    ]
    segments.save(db, "spanish", "language:es status:paused", clock=CLOCK)
    assert [row["expression"] for row in segments.saved_segments(db)] == [
        "country:BB,TT interest:security", "language:es status:paused"]
    assert segments.delete(db, "spanish") is True
    assert segments.delete(db, "spanish") is False
    assert [row["name"] for row in segments.saved_segments(db)] == ["caribbean"]


def test_a_segment_that_does_not_parse_or_has_a_bad_name_is_not_saved(db):
    with pytest.raises(SegmentError, match="unknown country 'Atlantis'"):
        segments.save(db, "atlantis", "country:Atlantis", clock=CLOCK)
    with pytest.raises(SegmentError) as error:
        segments.save(db, "two words", "country:TT", clock=CLOCK)
    assert str(error.value) == "segment name 'two words': use letters, digits, - and _"
    assert segments.saved_segments(db) == []


# --- the CLI -----------------------------------------------------------------------------------------


def test_cli_segments_count_save_list_delete(tmp_path):
    config = tmp_path / "newsletter.toml"
    config.write_text('[newsletter]\ndatabase = "test.db"\n', encoding="utf-8")
    database = connect(tmp_path / "test.db")
    for email, country, language, interests, status in PEOPLE:
        row = subscribers.add(database, email, country=country, language=language, interests=interests,
                              clock=CLOCK)
        subscribers.set_status(database, row["id"], status, clock=CLOCK)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--config", str(config), *args],
                                    env={"NEWSLETTER_SECRET_KEY": "k", "NEWSLETTER_CONFIG": None})
        return result.exit_code, " ".join(result.output.split())

    assert run("segments", "count", "country:bb,TT", "interest:DNSSEC") == (
        0, "2 subscribers match country:BB,TT interest:security")
    assert run("segments", "save", "caribbean", "country:BB,TT") == (
        0, "Saved @caribbean = country:BB,TT (3 subscribers now)")
    code, text = run("segments", "list")
    assert code == 0 and "@caribbean │ country:BB,TT │ 3" in text
    assert run("segments", "count", "country:Atlantis") == (
        1, "Error: in 'country:Atlantis': unknown country 'Atlantis'; use an ISO code such as TT or BR")
    assert run("segments", "delete", "@caribbean") == (0, "Deleted @caribbean.")
    assert run("segments", "delete", "caribbean") == (1, "Error: no saved segment named 'caribbean'")


def test_a_quoted_country_name_with_spaces_is_one_value():
    segment = parse_segment('country:"Trinidad y Tobago",BB interest:security')
    assert segment.countries == {"TT", "BB"}
    assert segment.interests == {"security"}


def test_an_unbalanced_quote_is_refused_with_the_expression_named():
    with pytest.raises(SegmentError, match="unbalanced quote"):
        parse_segment('country:"Trinidad y Tobago')
