"""The monthly digest: which articles go in, and the campaign folder it writes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from newsletter.campaigns import load_campaign
from newsletter.clock import utc_iso
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.digest import DigestError, build_digest, digest_window

RULE = "day 1 of each month at 09:00 America/Port_of_Spain"
# 09:00 in Port of Spain (UTC-4, no daylight saving) is 13:00 UTC.
DEC_1 = datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)
NOV_1 = datetime(2026, 11, 1, 13, 0, tzinfo=timezone.utc)
SEP_1 = datetime(2026, 9, 1, 13, 0, tzinfo=timezone.utc)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "articles").mkdir()
    (tmp_path / "newsletter.toml").write_text(
        '[newsletter]\ntimezone = "America/Port_of_Spain"\nsecret_key = "test"\n'
        f'[digest]\nrules = ["{RULE}"]\narticles_dir = "articles"\nsegment = "language:es"\ntemplate = "digest"\n',
        encoding="utf-8")
    config = load_config(tmp_path / "newsletter.toml", environ={})
    return config, connect(config.database)


def write_article(config, name: str, day: str, title: str | None = None) -> Path:
    path = config.digest.articles_dir / name
    path.write_text(f"---\ntitle: {title or name}\ndate: {day}\ninterests: [policy]\n---\n\nBody of {name}.\n",
                    encoding="utf-8")
    return path


def record_digest(db, occurrence: datetime, slug: str) -> None:
    db.execute("INSERT INTO digest_runs (rule, occurrence, slug, outcome, created_at) VALUES (?, ?, ?, ?, ?)",
               [RULE, utc_iso(occurrence), slug, "scheduled", utc_iso(occurrence)])


def test_digest_holds_exactly_the_articles_dated_after_the_previous_occurrence_up_to_this_one(site):
    config, db = site
    write_article(config, "on-previous-day.md", "2026-11-01")
    write_article(config, "day-after-previous.md", "2026-11-02")
    write_article(config, "middle.md", "2026-11-15")
    write_article(config, "on-this-day.md", "2026-12-01")
    write_article(config, "after-this-day.md", "2026-12-02")
    write_article(config, "long-ago.md", "2025-03-10")

    campaign = build_digest(config, DEC_1, db)

    assert [article.source.name for article in campaign.articles] == [
        "on-this-day.md", "middle.md", "day-after-previous.md"]  # newest first
    assert sorted(path.name for path in campaign.folder.iterdir()) == [
        "campaign.toml", "day-after-previous.md", "middle.md", "on-this-day.md"]


def test_after_downtime_the_window_starts_at_the_last_digest_built_so_missed_months_are_included(site):
    config, db = site
    record_digest(db, SEP_1, "digest-2026-09")
    write_article(config, "october.md", "2026-10-05")
    write_article(config, "november.md", "2026-11-20")

    assert digest_window(config, DEC_1, db).after.isoformat() == "2026-09-01"
    campaign = build_digest(config, DEC_1, db)

    assert {article.source.name for article in campaign.articles} == {"october.md", "november.md"}


def test_without_a_previous_digest_the_window_starts_at_the_rules_previous_occurrence(site):
    config, db = site
    write_article(config, "october.md", "2026-10-05")
    write_article(config, "november.md", "2026-11-20")

    assert digest_window(config, DEC_1, db).after.isoformat() == "2026-11-01"
    assert [article.source.name for article in build_digest(config, DEC_1, db).articles] == ["november.md"]


def test_no_new_articles_builds_nothing(site):
    config, db = site
    write_article(config, "old.md", "2026-10-05")

    assert build_digest(config, DEC_1, db) is None
    assert not (config.campaigns_dir / "digest-2026-12").exists()


def test_the_folder_is_a_campaign_with_month_names_in_four_languages_and_the_configured_segment(site):
    config, db = site
    write_article(config, "news.md", "2026-11-20", title="Peering in Grenada")

    campaign = build_digest(config, DEC_1, db)

    assert campaign.slug == "digest-2026-12"
    assert campaign.folder == config.campaigns_dir / "digest-2026-12"
    assert campaign.title == "December 2026 digest"
    assert campaign.segment == "language:es" and campaign.template == "digest"
    assert campaign.send_at is None  # the scheduler decides when
    assert campaign.subject["en"].endswith("December 2026")
    assert "Diciembre de 2026" in campaign.subject["es"]
    assert "Dezembro de 2026" in campaign.subject["pt"]
    assert "Décembre 2026" in campaign.subject["fr"]
    assert "diciembre de 2026" in campaign.intro["es"] and "décembre 2026" in campaign.preheader["fr"]
    assert campaign.articles[0].title == "Peering in Grenada"
    assert (campaign.folder / "news.md").read_bytes() == (config.digest.articles_dir / "news.md").read_bytes()
    assert campaign.titles == {"en": "December 2026 digest", "es": "Boletín de diciembre de 2026",
                               "pt": "Boletim de dezembro de 2026", "fr": "Lettre de décembre 2026"}


def test_an_articles_translations_travel_with_it_and_are_no_articles_of_their_own(site):
    config, db = site
    write_article(config, "news.md", "2026-11-20", title="Peering in Grenada")
    (config.digest.articles_dir / "news.es.md").write_text("---\ntitle: Peering en Granada\n---\n\nTexto.\n",
                                                            encoding="utf-8")
    campaign = build_digest(config, DEC_1, db)
    [article] = campaign.articles
    assert article.version("es").title == "Peering en Granada" and (campaign.folder / "news.es.md").is_file()


def test_a_french_month_starting_with_a_vowel_is_elided(site):
    config, db = site
    write_article(config, "news.md", "2027-03-20")
    campaign = build_digest(config, datetime(2027, 4, 1, 13, 0, tzinfo=timezone.utc), db)
    assert campaign.titles["fr"] == "Lettre d'avril 2027" and "d'avril 2027" in campaign.intro["fr"]


def test_building_the_same_occurrence_twice_gives_the_same_folder(site):
    config, db = site
    write_article(config, "a.md", "2026-11-10")
    write_article(config, "b.md", "2026-11-20")

    first = build_digest(config, DEC_1, db)
    before = {path.name: path.read_bytes() for path in first.folder.iterdir()}
    second = build_digest(config, DEC_1, db)

    assert second.folder == first.folder
    assert {path.name: path.read_bytes() for path in second.folder.iterdir()} == before
    assert load_campaign(second.folder, config.tz).subject == first.subject


def test_rebuilding_drops_an_article_that_left_the_window(site):
    config, db = site
    write_article(config, "a.md", "2026-11-10")
    moved = write_article(config, "b.md", "2026-11-20")
    build_digest(config, DEC_1, db)
    write_article(config, "b.md", "2026-12-20")  # the editor corrected its date

    campaign = build_digest(config, DEC_1, db)

    assert [article.source.name for article in campaign.articles] == ["a.md"]
    assert not (campaign.folder / moved.name).exists()


def test_an_article_without_a_date_stops_the_build_and_names_the_file(site):
    config, db = site
    (config.digest.articles_dir / "undated.md").write_text("---\ntitle: Undated\n---\n\nText.\n", encoding="utf-8")

    with pytest.raises(DigestError, match=r"undated\.md: no date; add `date: YYYY-MM-DD`"):
        build_digest(config, DEC_1, db)


def test_a_second_occurrence_in_the_same_month_is_refused_rather_than_overwriting_the_sent_digest(site):
    config, db = site
    record_digest(db, DEC_1, "digest-2026-12")
    write_article(config, "late.md", "2026-12-10")

    with pytest.raises(DigestError, match="digest-2026-12 was already built .* one rule per month"):
        build_digest(config, datetime(2026, 12, 15, 13, 0, tzinfo=timezone.utc), db)


def test_a_missing_articles_dir_is_an_error_that_names_the_setting(site, tmp_path):
    config, db = site
    config.digest.articles_dir = tmp_path / "nowhere"

    with pytest.raises(DigestError, match=r"\[digest\] articles_dir: .*nowhere is not a folder"):
        build_digest(config, DEC_1, db)
