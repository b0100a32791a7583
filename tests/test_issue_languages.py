"""The sample issue as each language's reader gets it: heading, brand, categories, footer and links in both
parts; article versions per language; pictures; and what `campaign build` tells the editor."""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime, timezone
from email import message_from_bytes, policy
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from newsletter.articles import ArticleError, parse_article
from newsletter.campaigns import CampaignError, content_warnings, load_campaign, missing_languages, placements
from newsletter.cli import cli
from newsletter.config import CONFIG_ENV, SECRET_ENV, SMTP_ENV, ConfigError, load_config
from newsletter.db import LANGUAGES, connect
from newsletter.images import LAYOUT_WIDTH, image_size
from newsletter.interests import Taxonomy
from newsletter.message import MessageFactory, new_message_id
from newsletter.render import IssueRenderer, RenderError, first_name, greeting
from newsletter.signing import Signer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "campaigns" / "2026-12-lac-digest"
BASE = "https://news.lac.example.org"
POSTAL = "Rambla Example 1234\n11300 Montevideo, Uruguay"
UTC = ZoneInfo("UTC")

# What each language's reader must see: nothing of it in English (but the names of things).
EXPECTED = {
    "en": {"h1": "December 2026 digest", "brand": "LAC Internet Digest",
           "categories": ["Partnerships", "Development", "Chapters"], "more": "Read more"},
    "es": {"h1": "Boletín de diciembre de 2026", "brand": "Boletín de Internet de ALC",
           "categories": ["Alianzas", "Desarrollo", "Capítulos"], "more": "Leer más"},
    "pt": {"h1": "Boletim de dezembro de 2026", "brand": "Boletim de Internet da ALC",
           "categories": ["Parcerias", "Desenvolvimento", "Capítulos"], "more": "Leia mais"},
    "fr": {"h1": "Lettre de décembre 2026", "brand": "Lettre Internet ALC",
           "categories": ["Partenariats", "Développement", "Chapitres"], "more": "Lire la suite"},
}
LIST_NAMES = {lang: expected["brand"] for lang, expected in EXPECTED.items()}


def write_config(folder: Path, **extra: str) -> Path:
    lines = ["[newsletter]", f'campaigns_dir = "{ROOT / "campaigns"}"', 'secret_key = "' + "k" * 40 + '"',
             f'base_url = "{BASE}"', 'postal_address = "Rambla Example 1234\\n11300 Montevideo, Uruguay"',
             f'logo = "{ROOT / "src/newsletter/samples/logo.png"}"',
             *[f"{key} = {value}" for key, value in extra.items()], "", "[newsletter.list_name]",
             *[f'{lang} = "{name}"' for lang, name in LIST_NAMES.items()]]
    path = folder / "newsletter.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("languages"))


@pytest.fixture(scope="module")
def mails(project: Path) -> dict[str, tuple[str, str, int]]:
    """Each language's complete message as a subscriber gets it: (html, text, size in bytes)."""
    config = load_config(project, environ={})
    taxonomy = Taxonomy.load(connect(config.database))
    renderer = IssueRenderer(load_campaign(SAMPLE, UTC), config, taxonomy)
    factory = MessageFactory(config, Signer(config.secret_key))
    found = {}
    for index, lang in enumerate(LANGUAGES, start=1):
        subscriber = {"id": index, "email": f"{lang}@example.net", "name": "María José Prieto", "language": lang,
                      "interests": taxonomy.mask(taxonomy.slugs), "country": "TT"}
        data = factory.build(renderer.variant_for(subscriber), subscriber, message_id=new_message_id("s", index, "x.org"),
                             now=datetime(2026, 12, 1, 13, tzinfo=timezone.utc))
        message = message_from_bytes(data, policy=policy.default)
        found[lang] = (message.get_body(("html",)).get_content(),
                       message.get_body(("plain",)).get_content().replace("\r\n", "\n"), len(data))
    return found


class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[dict[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "a":
            self.links.append(attributes.get("href", ""))
        if tag == "img":
            self.images.append(attributes)


def text_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_heading_brand_and_categories_are_in_the_readers_language_in_both_parts(mails, lang):
    html, text, _ = mails[lang]
    expected = EXPECTED[lang]
    assert [text_of(h1) for h1 in re.findall(r"<h1\b[^>]*>(.*?)</h1>", html, re.S)] == [expected["h1"]]
    assert text.splitlines()[text.splitlines().index(expected["h1"]) + 1].startswith("====")
    header = re.search(r'<td class="header"[^>]*>(.*?)</td>', html, re.S).group(1)
    assert text_of(header) == expected["brand"]
    assert expected["brand"] in text.split("\n\n")[1]  # the text part's header, after the browser link
    assert expected["brand"] in text_of(html.split('class="footer"')[1])
    assert expected["brand"] in " ".join(text.split("-" * 72)[1].split())
    categories = [text_of(p) for p in re.findall(r'<p class="category"[^>]*>(.*?)</p>', html, re.S)]
    assert categories == expected["categories"]
    assert [line[1:-1] for line in text.splitlines() if re.fullmatch(r"\[[^]]+\]", line)] == expected["categories"]
    if lang != "en":
        for english in EXPECTED["en"]["categories"] + ["December 2026 digest", "LAC Internet Digest", "Read more"]:
            assert english not in text_of(html) and english not in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_footer_carries_the_postal_address_and_working_personal_links(mails, lang):
    html, text, _ = mails[lang]
    footer_html = text_of(html.split('class="footer"')[1])
    footer_text = text.split("-" * 72)[1]
    for line in POSTAL.splitlines():
        assert line in footer_html and f"\n{line}\n" in footer_text
    assert re.search(rf'href="{re.escape(BASE)}/u/[^"]+"', html) and re.search(rf"{re.escape(BASE)}/p/\S+", footer_text)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_link_goes_somewhere_and_articles_without_a_url_link_to_their_archive_page(mails, lang):
    html, text, _ = mails[lang]
    links = Page(html).links
    assert links and all(re.match(r"https?://\S+$", link) for link in links), [l for l in links if not l.startswith("http")]
    archive_article = f"{BASE}/archive/2026-12-lac-digest/{lang}/"
    for slug in ("growing-skills", "chapter-leaders"):  # neither has a URL of its own
        assert archive_article + slug in links
        assert re.search(rf"^{EXPECTED[lang]['more']}\s?: {re.escape(archive_article + slug)}$", text, re.M)
    assert not re.search(r":\s*$", "\n".join(line for line in text.splitlines() if EXPECTED[lang]["more"] in line),
                         re.M)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_pictures_have_their_size_stay_within_the_layout_and_the_text_part_says_nothing_of_them(mails, lang):
    html, text, size = mails[lang]
    images = Page(html).images
    assert [image["src"] for image in images] == [f"{BASE}/archive/logo.png",
                                                  f"{BASE}/archive/2026-12-lac-digest/images/chapter-leaders.png"]
    for image in images:
        assert image["alt"].strip() and int(image["width"]) <= LAYOUT_WIDTH and int(image["height"]) > 0
    assert images[1]["width"] == "536" and images[1]["height"] == "240"  # 1072 x 480, halved to fit
    assert images[0]["alt"] == EXPECTED[lang]["brand"]
    assert ".png" not in text and "Illustration" not in text and "Ilustra" not in text
    assert size < 100 * 1024


def test_the_greeting_uses_the_first_name(mails):
    assert first_name("Ana Lucía Prieto") == "Ana" and first_name("Prieto, Ana") == "Ana" and first_name(" ") == ""
    assert greeting("es", "María José Prieto") == "Hola, María:"
    assert "\nBonjour María,\n" in mails["fr"][1]


def test_list_name_is_one_text_or_a_table_with_english(tmp_path):
    assert load_config(write_config(tmp_path), environ={}).list_name_for("pt") == "Boletim de Internet da ALC"
    plain = tmp_path / "plain.toml"
    plain.write_text('[newsletter]\nlist_name = "Digest"\n', encoding="utf-8")
    assert load_config(plain, environ={}).list_name_for("fr") == "Digest"
    bad = tmp_path / "bad.toml"
    bad.write_text('[newsletter.list_name]\nes = "Boletín"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"list_name\.en: missing"):
        load_config(bad, environ={})


# --- article versions, filing and pictures ---------------------------------------------------------


def campaign_folder(tmp_path: Path, toml: str, files: dict[str, str]) -> Path:
    folder = tmp_path / "2027-01-test"
    folder.mkdir(parents=True)
    (folder / "campaign.toml").write_text(toml + '\n[subject]\nen = "News"\n', encoding="utf-8")
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


def test_a_reader_gets_their_languages_version_else_the_default(tmp_path):
    folder = campaign_folder(tmp_path, '[[articles]]\nfile = "news.md"\ntranslations = { fr = "nouvelles.md" }\n', {
        "news.md": "---\ntitle: Peering week\ndate: 2026-12-20\ninterests: [infrastructure]\n---\n\nOperators met.\n",
        "news.es.md": "---\ntitle: Semana de peering\n---\n\nLos operadores se reunieron.\n",
        "nouvelles.md": "---\ntitle: Semaine du peering\n---\n\nLes opérateurs se sont réunis.\n",
    })
    [article] = load_campaign(folder, UTC).articles
    assert sorted(article.translations) == ["es", "fr"]
    assert article.version("es").title == "Semana de peering" and article.version("es").interests == ["infrastructure"]
    assert article.version("fr").paragraphs == ["Les opérateurs se sont réunis."]
    assert article.version("pt").title == "Peering week" and article.version("es").date == date(2026, 12, 20)
    missing = missing_languages(load_campaign(folder, UTC))
    articles = {lang: [item for item in missing[lang] if item.startswith("article")] for lang in LANGUAGES}
    assert articles == {"en": [], "es": [], "fr": [], "pt": ["article news"]}
    assert missing["es"] == ["subject", "title"]  # the campaign's own texts count too (the title is the subject)


def test_translation_files_are_not_articles_of_their_own(tmp_path):
    folder = campaign_folder(tmp_path, "", {"news.md": "---\ntitle: Peering week\n---\n\nOperators met.\n",
                                            "news.pt.md": "---\ntitle: Semana de peering\n---\n\nOperadores.\n",
                                            "other.es.md": "---\ntitle: Otra\n---\n\nSola.\n"})
    news, other = load_campaign(folder, UTC).articles
    assert (news.slug, list(news.translations), other.slug, other.translations) == ("news", ["pt"], "other", {})


def test_texts_and_labels_may_be_given_per_language(tmp_path):
    folder = campaign_folder(tmp_path / "x", '[title]\nen = "January"\nes = "Enero"\n'
                             '[section_labels]\ngeneral = "Around the region"\n[section_labels.security]\n'
                             'en = "Safer networks"\nes = "Redes más seguras"\n'
                             '[[articles]]\nfile = "a.md"\ncategory = { en = "Security", es = "Seguridad" }\n'
                             '[[articles]]\nfile = "b.md"\n', {
                                 "a.md": "---\ntitle: A\ninterests: [security]\n---\n\nText.\n",
                                 "a.pt.md": "---\ntitle: A em português\n---\n\nTexto.\n",
                                 "b.md": "---\ntitle: B\n---\n\nText.\n"})
    campaign = load_campaign(folder, UTC)
    assert (campaign.title_for("es"), campaign.title_for("fr")) == ("Enero", "January")
    renderer = IssueRenderer(campaign, load_config(write_config(tmp_path), environ={}),
                             Taxonomy.load(connect(tmp_path / "t.db")))
    html = renderer.variant("es", frozenset(), "").html
    assert "Redes más seguras" in html and "Around the region" in html and ">Seguridad</p>" in html
    assert "Safer networks" in renderer.variant("pt", frozenset(), "").html
    missing = missing_languages(campaign)
    assert "category of a" in missing["pt"] and "article a" in missing["es"] and "category of a" not in missing["es"]


def test_an_image_without_its_description_is_refused(tmp_path):
    shutil.copy(SAMPLE / "chapter-leaders.png", tmp_path / "map.png")
    (tmp_path / "a.md").write_text("---\ntitle: A\nimage: map.png\n---\n\nText.\n", encoding="utf-8")
    with pytest.raises(ArticleError, match=r"a\.md, line 3: image 'map\.png' has no image_alt"):
        parse_article(tmp_path / "a.md")
    (tmp_path / "b.md").write_text("---\ntitle: B\nimage: gone.png\nimage_alt: A map\n---\n", encoding="utf-8")
    with pytest.raises(ArticleError, match="does not exist"):
        parse_article(tmp_path / "b.md")
    assert image_size(tmp_path / "map.png") == (1072, 480)


def test_old_articles_and_empty_sections_are_warned_about(tmp_path):
    folder = campaign_folder(tmp_path, 'send_at = "2027-01-05 09:00"\nperiod_days = 20\nsections = ["policy", "grants"]\n', {
        "old.md": "---\ntitle: Old\ndate: 2014-03-27\ninterests: [policy]\n---\n\nText.\n",
        "new.md": "---\ntitle: New\ndate: 2026-12-28\ninterests: [policy]\n---\n\nText.\n"})
    warnings = content_warnings(load_campaign(folder, UTC), date(2027, 1, 1))
    assert len(warnings) == 2
    assert "old.md is dated 2014-03-27, 4,667 days before this issue (2027-01-05)" in warnings[0]
    assert "period_days" in warnings[0] and "'grants'" in warnings[1]


def test_a_template_that_leaves_an_href_empty_is_refused(tmp_path):
    templates = tmp_path / "templates" / "email"
    templates.mkdir(parents=True)
    (templates / "digest.html").write_text('<a href="">x</a> NLPHunsubscribe_urlNLPH NLPHpreferences_urlNLPH',
                                           encoding="utf-8")
    (templates / "digest.txt").write_text("x", encoding="utf-8")
    config = load_config(write_config(tmp_path, templates_dir=f'"{tmp_path / "templates"}"'), environ={})
    renderer = IssueRenderer(load_campaign(SAMPLE, UTC), config, Taxonomy.load(connect(tmp_path / "t.db")))
    with pytest.raises(RenderError, match="empty href"):
        renderer.variant("en", frozenset(), "")


def test_build_says_where_each_article_went_and_why_and_which_languages_are_complete(tmp_path):
    project = write_config(tmp_path)
    runner = CliRunner(env={CONFIG_ENV: None, SECRET_ENV: None, SMTP_ENV: None})
    result = runner.invoke(cli, ["--config", str(project), "campaign", "build", "2026-12-lac-digest"],
                           terminal_width=250)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "canto-internet-society -> Capacity building and training: interests training, security from matched " \
           "words: training (in the lead: education ×2; then workshop); security (spam, cybersecurity, hackers)" in output
    assert "chapter-leaders -> More news: no interest" in output
    for lang in LANGUAGES:
        assert f"{lang}: complete" in output
    assert "warning" not in output
    (tmp_path / "newsletter.toml").write_text(project.read_text().replace("postal_address", "# postal_address"))
    result = runner.invoke(cli, ["--config", str(project), "campaign", "build", "2026-12-lac-digest"],
                           terminal_width=250)
    assert "warning: postal_address is empty" in " ".join(result.output.split())


def test_init_asks_for_the_postal_address(tmp_path):
    result = CliRunner(env={CONFIG_ENV: None, SECRET_ENV: None, SMTP_ENV: None}).invoke(
        cli, ["init", "--path", str(tmp_path / "newsletter.toml")])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "newsletter.toml").read_text(encoding="utf-8")
    assert re.search(r"^# The bureau's postal address.*\n(#.*\n)*postal_address = \"\"$", written, re.M)


def test_the_seed_articles_file_by_their_lead(requires_seed_files):
    press_release, scraped_page = requires_seed_files
    assert parse_article(press_release).interests[0] == "training"  # not security: spam, hackers in passing
    assert parse_article(scraped_page).interests[0] == "training"  # not infrastructure: capacity building leads


@pytest.fixture
def requires_seed_files():
    from seeds import PRESS_RELEASE, SCRAPED_PAGE, SEEDS

    if not SEEDS.is_dir():
        pytest.skip(f"{SEEDS} is absent: the seed articles live beside the repository, not in it")
    return PRESS_RELEASE, SCRAPED_PAGE


def test_campaign_errors_name_the_translation(tmp_path):
    folder = campaign_folder(tmp_path, '[[articles]]\nfile = "a.md"\ntranslations = { de = "a-de.md" }\n',
                             {"a.md": "---\ntitle: A\n---\n\nText.\n"})
    with pytest.raises(CampaignError, match=r"articles\[1\]\.translations\.de: unknown language"):
        load_campaign(folder, UTC)


def test_a_send_with_an_empty_href_is_refused_before_anything_is_queued(tmp_path):
    from newsletter import deliveries
    from newsletter.sender import prepare_campaign
    from newsletter.subscribers import add

    templates = tmp_path / "templates" / "email"
    templates.mkdir(parents=True)
    (templates / "digest.html").write_text('<a href="">x</a> NLPHunsubscribe_urlNLPH NLPHpreferences_urlNLPH',
                                           encoding="utf-8")
    (templates / "digest.txt").write_text("x", encoding="utf-8")
    config = load_config(write_config(tmp_path, templates_dir=f'"{tmp_path / "templates"}"'), environ={})
    db = connect(config.database)
    add(db, "ana@example.org", name="Ana", language="es")
    with pytest.raises(RenderError, match="empty href"):
        prepare_campaign(config, db, "2026-12-lac-digest")
    assert sum(deliveries.counts(db, "2026-12-lac-digest").values()) == 0


def test_build_lists_links_a_mail_client_cannot_follow(tmp_path):
    from newsletter.render import build_campaign

    folder = campaign_folder(tmp_path, '[[articles]]\nfile = "a.md"\nurl = "news/a.html"\n',
                             {"a.md": "---\ntitle: A\n---\n\nText.\n"})
    config = load_config(write_config(tmp_path), environ={})
    renderer = IssueRenderer(load_campaign(folder, UTC), config, Taxonomy.load(connect(tmp_path / "t.db")))
    report = build_campaign(renderer, tmp_path / "out", LANGUAGES, date(2027, 1, 1))
    assert report.unresolved == {lang: ["news/a.html"] for lang in LANGUAGES}


def test_send_warns_when_the_postal_address_is_empty(tmp_path):
    project = write_config(tmp_path, smtp_url=f'"maildir://{tmp_path / "outbox"}"')
    project.write_text(project.read_text().replace("postal_address", "# postal_address"), encoding="utf-8")
    result = CliRunner(env={CONFIG_ENV: None, SECRET_ENV: None, SMTP_ENV: None}).invoke(
        cli, ["--config", str(project), "send", "2026-12-lac-digest"], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "warning: postal_address is empty" in " ".join(result.output.split())


def test_the_pages_and_the_confirmation_mail_name_the_list_in_the_visitors_language(tmp_path):
    from web_support import LiveSite

    from newsletter.clock import FakeClock
    from newsletter.web.confirmation import confirmation_message

    with LiveSite.start(tmp_path, list_names=LIST_NAMES) as site:
        page = site.get("/subscribe?lang=pt")
        assert '<header class="site"><p>Boletim de Internet da ALC</p></header>' in page.text
        assert "Sim, enviem Boletim de Internet da ALC para este endereço." in page.text  # the consent box
        data = confirmation_message(site.config, lang="es", name="Ana Prieto", address="ana@example.org",
                                    confirm_url="https://x.example/confirm/t", clock=FakeClock(datetime(2026, 12, 1, tzinfo=timezone.utc)))
    message = message_from_bytes(data, policy=policy.default)
    assert message["Subject"] == "Confirme su suscripción a Boletín de Internet de ALC"
    assert "Hola, Ana:" in message.get_body(("plain",)).get_content()


def test_a_logo_that_is_no_picture_refuses_the_render_naming_the_setting(tmp_path):
    (tmp_path / "logo.png").write_text("not a picture", encoding="utf-8")
    config = load_config(write_config(tmp_path), environ={})
    config.logo = tmp_path / "logo.png"
    renderer = IssueRenderer(load_campaign(SAMPLE, UTC), config, Taxonomy.load(connect(tmp_path / "t.db")))
    with pytest.raises(RenderError, match=r"\[newsletter\] logo: .*logo\.png: not a PNG, GIF or JPEG"):
        renderer.full_issue("en")
