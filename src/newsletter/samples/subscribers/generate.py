"""Fictional subscribers from Latin America and the Caribbean, as CSV, for demos, imports and load tests.

    python subscribers/generate.py --rows 200 --seed 2026 -o subscribers/sample.csv
    python subscribers/generate.py --rows 1000000 -o /tmp/million.csv     # streams, constant memory

or, from Python (load the file by path; `subscribers/` is not a package):

    for row in generate_rows(1000, seed=7): ...   # dicts keyed by COLUMNS

Every address is unique within one run (a name plus the row number) and uses only the reserved
example.org / example.net / example.com domains, so no mail can ever reach a real person. The same seed
gives the same file. Tables are built once and each row is a handful of table look-ups, which is what makes
a million rows take seconds rather than minutes.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import sys
import time
import unicodedata
from contextlib import nullcontext
from datetime import date, timedelta
from typing import Iterator

from newsletter.db import SEED_INTERESTS

COLUMNS = ("email", "name", "country", "language", "interests", "status", "consent_at", "consent_source")
DOMAINS = ("example.org", "example.net", "example.com")

# Name pools: (given names, surnames, share of people with two surnames), comma-separated because some
# names have spaces ("Van der Berg") and some apostrophes ("D'Alessandro", "O'Neil").
HISPANIC = (
    "José, María, Ana, Luis, Sofía, Martín, Lucía, Camila, Andrés, Germán, Inés, Iván, Raúl, Ramón, Mónica, "
    "Verónica, Héctor, Óscar, Jesús, Guadalupe, Xóchitl, Ximena, Valentina, Mateo, Santiago, Diego, Carmen, "
    "Rocío, Joaquín, Nicolás, Begoña, Julián, Adrián, Belén, Maite, Fabián, Ángela, Yolanda, Efraín, Nahuel, "
    "Araceli, Ricardo, Paola, Daniela, Tomás",
    "García, Rodríguez, Martínez, Hernández, López, González, Pérez, Sánchez, Ramírez, Torres, Flores, "
    "Rivera, Gómez, Díaz, Cruz, Morales, Ortiz, Gutiérrez, Chávez, Ruiz, Álvarez, Castillo, Jiménez, Vásquez, "
    "Núñez, Peña, Mendoza, Quispe, Mamani, Huamán, Benítez, Giménez, Fernández, Acuña, Ibáñez, Muñoz, Zúñiga, "
    "Echeverría, Villalobos, Colque, Sosa, Cabrera, D'Alessandro, D'Angelo, Rossi, Ferrari, Cáceres, Rojas, "
    "Espinoza, Bolaños, Argüello, Duarte, Solís, Ordóñez",
    0.35,
)
BRAZILIAN = (
    "João, Maria, José, Ana, Francisco, Antônio, Conceição, Luís, Luíza, Gabriel, Beatriz, Letícia, Thiago, "
    "Júlia, Vitória, Caio, Raimundo, Sebastião, Iracema, Jéssica, Márcio, Cláudia, Rafael, Larissa, Lúcia, "
    "Gonçalo, Inês, Joana, Sérgio, Fábio, Mônica, Cecília, Vinícius, Débora, Rogério",
    "Silva, Santos, Oliveira, Souza, Rodrigues, Ferreira, Alves, Pereira, Lima, Gomes, Ribeiro, Carvalho, "
    "Araújo, Gonçalves, Conceição, Assunção, Magalhães, Brandão, Simões, Sá, Falcão, Nascimento, Barbosa, "
    "Cardoso, Teixeira, Moreira, Antunes, Guimarães, Damasceno, Aragão",
    0.3,
)
HAITIAN = (
    "Jean, Marie, Françoise, Pierre, Wideline, Stéphane, Guerline, Ketly, Jocelyne, Frantz, Réginald, "
    "Édouard, Mirlande, Nadège, Rosemène, Kervens, Widlyn, Sophonie, Darline, Hélène, Jean-Robert, "
    "Marie-Claude, Gaëlle, Lovely, Fabiola",
    "Joseph, Pierre, Jean-Baptiste, Louis, Charles, Désir, Étienne, Dorvil, Théodore, Saint-Fleur, Augustin, "
    "Laguerre, Célestin, Désinor, Exantus, Noël, Lafontant, Pierre-Louis, Bélizaire, Dorélien, Fils-Aimé, "
    "Métellus",
    0.0,
)
FRENCH = (
    "Françoise, Amélie, Gaël, Benoît, Anaïs, Mathieu, Chloé, Élodie, Jérôme, Léa, Noémie, Stéphane, Hélène, "
    "Rémi, Zoé, Marie-Ève, Jean-François, Sébastien, Geneviève, Maëlle",
    "Tremblay, Gagnon, Côté, Lefèvre, Dubois, Mercier, Bélanger, Gauthier, Lévesque, Béliveau, Durand, "
    "Moreau, Lemaître, Ouellet, D'Amour, L'Heureux, Saint-Pierre, Thériault",
    0.0,
)
ANGLO_CARIBBEAN = (
    "Shanice, Delroy, Tamika, Andre, Kemar, Keisha, Marlon, Shericka, Akeem, Tricia, Dwayne, Natalie, "
    "Winston, Ayana, Jerome, Kareem, Odette, Nigel, Simone, Roxanne, Desmond, Renée, Kadeem, Sheree, "
    "Garfield, Petrina, Orville, Jada, Leroy, Annmarie",
    "Brown, Williams, Campbell, Thompson, Clarke, Joseph, Charles, Baptiste, Henry, Bailey, Greaves, Knowles, "
    "Rolle, O'Neil, O'Garro, Alleyne, Layne, Gittens, Forde, Pinder, Ferguson, St. Hill, De Freitas, "
    "Mitchell, Francis, Lewis, James, Edwards, Richards, Phillip, Augustine, Cumberbatch",
    0.0,
)
INDO_CARIBBEAN = (
    "Ravi, Anjali, Vishnu, Shiva, Nadira, Rajesh, Indira, Kamla, Devika, Sunil, Reshma, Anil, Ashwin, Farida, "
    "Navin, Savitri, Kavita, Rohan, Shalini, Imran",
    "Persaud, Ramdass, Singh, Ramkissoon, Maharaj, Mohammed, Ali, Boodram, Seepersad, Khan, Jagdeo, Ramlogan, "
    "Baboolal, Rampersad, Sookdeo, Mungroo",
    0.0,
)
SURINAMESE = (
    "Ricardo, Jennifer, Marcel, Saskia, Johan, Chantal, Sarmo, Sri, Wiebe, Ingrid, Ruben, Mariska, Dewi, "
    "Glenn, Rinia",
    "Wongsodikromo, Karijo, Soemita, Sastro, Pinas, Sedney, Fernandes, Van der Berg, De Vries, Kromodimedjo, "
    "Biswamitre, Tjon A Fong, Redjosentono, Amafo",
    0.0,
)
NORTHERN = (
    "Emily, James, Olivia, Liam, Siobhan, Seán, Grace, Michael, Hannah, Owen, Chloé, Daniel, Zoë, Ethan, "
    "Niamh",
    "Smith, O'Connor, O'Brien, Walker, Taylor, Murphy, MacDonald, Wilson, Anderson, Davies, Evans, Robertson, "
    "Nguyen, Patel",
    0.0,
)

# country: (weight in the sample, {language: weight}, {name pool: weight})
SPANISH_LATAM = {"es": 88, "en": 10, "pt": 2}
ENGLISH_CARIBBEAN = {"en": 95, "es": 5}
COUNTRIES = {
    "BR": (32, {"pt": 90, "es": 5, "en": 5}, {BRAZILIAN: 1}),
    "MX": (28, SPANISH_LATAM, {HISPANIC: 1}),
    "AR": (16, SPANISH_LATAM, {HISPANIC: 1}),
    "CO": (16, SPANISH_LATAM, {HISPANIC: 1}),
    "CL": (10, SPANISH_LATAM, {HISPANIC: 1}),
    "PE": (10, SPANISH_LATAM, {HISPANIC: 1}),
    "VE": (8, SPANISH_LATAM, {HISPANIC: 1}),
    "EC": (6, SPANISH_LATAM, {HISPANIC: 1}),
    "CU": (6, {"es": 92, "en": 8}, {HISPANIC: 1}),
    "DO": (6, {"es": 92, "en": 8}, {HISPANIC: 1}),
    "GT": (6, SPANISH_LATAM, {HISPANIC: 1}),
    "BO": (4, SPANISH_LATAM, {HISPANIC: 1}),
    "HN": (4, SPANISH_LATAM, {HISPANIC: 1}),
    "PY": (4, {"es": 84, "pt": 8, "en": 8}, {HISPANIC: 9, BRAZILIAN: 1}),
    "UY": (4, {"es": 84, "pt": 8, "en": 8}, {HISPANIC: 1}),
    "CR": (4, SPANISH_LATAM, {HISPANIC: 1}),
    "PA": (4, SPANISH_LATAM, {HISPANIC: 1}),
    "SV": (4, SPANISH_LATAM, {HISPANIC: 1}),
    "NI": (3, SPANISH_LATAM, {HISPANIC: 1}),
    "HT": (4, {"fr": 85, "en": 15}, {HAITIAN: 1}),
    "JM": (4, ENGLISH_CARIBBEAN, {ANGLO_CARIBBEAN: 1}),
    "TT": (4, {"en": 90, "es": 10}, {ANGLO_CARIBBEAN: 11, INDO_CARIBBEAN: 8, HISPANIC: 1}),
    "BB": (2, ENGLISH_CARIBBEAN, {ANGLO_CARIBBEAN: 1}),
    "BS": (2, ENGLISH_CARIBBEAN, {ANGLO_CARIBBEAN: 1}),
    "BZ": (2, {"en": 70, "es": 30}, {ANGLO_CARIBBEAN: 1, HISPANIC: 1}),
    "GY": (2, {"en": 95, "pt": 5}, {INDO_CARIBBEAN: 10, ANGLO_CARIBBEAN: 9, BRAZILIAN: 1}),
    "SR": (2, {"en": 70, "es": 15, "pt": 15}, {SURINAMESE: 10, INDO_CARIBBEAN: 7, ANGLO_CARIBBEAN: 3}),
    "LC": (1, {"en": 75, "fr": 25}, {ANGLO_CARIBBEAN: 7, HAITIAN: 3}),
    "DM": (1, {"en": 75, "fr": 25}, {ANGLO_CARIBBEAN: 7, HAITIAN: 3}),
    "GD": (1, ENGLISH_CARIBBEAN, {ANGLO_CARIBBEAN: 1}),
    "AG": (1, ENGLISH_CARIBBEAN, {ANGLO_CARIBBEAN: 1}),
    "KN": (1, ENGLISH_CARIBBEAN, {ANGLO_CARIBBEAN: 1}),
    "VC": (1, ENGLISH_CARIBBEAN, {ANGLO_CARIBBEAN: 1}),
    "US": (3, {"en": 75, "es": 25}, {NORTHERN: 7, HISPANIC: 3}),
    "CA": (1, {"en": 65, "fr": 35}, {NORTHERN: 13, FRENCH: 7}),
    "ES": (2, {"es": 100}, {HISPANIC: 1}),
    "PT": (1, {"pt": 100}, {BRAZILIAN: 1}),
    "FR": (1, {"fr": 100}, {FRENCH: 1}),
}

STATUSES = {"active": 880, "pending": 40, "paused": 20, "unsubscribed": 40, "bounced": 15, "complained": 5}

# consent source: (weight, spans of days on which such consents were given; event weeks are made up)
CONSENT_SOURCES = {
    "form:website": (50, (date(2019, 1, 1), date(2025, 12, 31))),
    "form:preference-centre": (8, (date(2022, 1, 1), date(2025, 12, 31))),
    "form:training-signup": (8, (date(2020, 3, 1), date(2025, 12, 31))),
    "event:LACNIC": (10, *((date(year, 5, 5), date(year, 5, 9)) for year in range(2019, 2026)),
                     *((date(year, 10, 6), date(year, 10, 10)) for year in range(2019, 2026))),
    "event:LACNOG": (5, *((date(year, 9, 22), date(year, 9, 26)) for year in range(2019, 2026))),
    "event:LACIGF": (4, *((date(year, 8, 4), date(year, 8, 7)) for year in range(2019, 2026))),
    "import:2025-crm": (15, (date(2016, 1, 1), date(2024, 12, 31))),
}


def generate_rows(n: int, seed: int = 2026) -> Iterator[dict[str, str]]:
    """`n` fictional subscribers as dicts keyed by COLUMNS, lazily, in the same order for the same seed."""
    for record in generate_records(n, seed):
        yield dict(zip(COLUMNS, record))


def generate_records(n: int, seed: int = 2026) -> Iterator[tuple[str, ...]]:
    """The same rows as tuples in COLUMNS order: what csv.writer wants, without building a dict per row."""
    rng = random.Random(seed)
    rand = rng.random
    countries = _weighted_table({code: spec[0] for code, spec in COUNTRIES.items()})
    profiles = {code: (_weighted_table(languages), _weighted_table({_pool(p): w for p, w in pools.items()}))
                for code, (_, languages, pools) in COUNTRIES.items()}
    interests = _weighted_table(_interest_combinations())
    statuses = _weighted_table(STATUSES)
    sources = _weighted_table({(source, _day_stamps(spans)): spec_weight
                               for source, (spec_weight, *spans) in CONSENT_SOURCES.items()})
    minutes = tuple(f"T{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60))
    seconds = tuple(f"{second:02d}Z" for second in range(60))

    for number in range(1, n + 1):
        country = countries[int(rand() * len(countries))]
        languages, pools = profiles[country]
        givens, surnames, double_share = pools[int(rand() * len(pools))]
        given, given_slug = givens[int(rand() * len(givens))]
        surname, surname_slug = surnames[int(rand() * len(surnames))]
        if rand() < double_share:
            second, second_slug = surnames[int(rand() * len(surnames))]
            if second != surname:
                surname, surname_slug = f"{surname} {second}", f"{surname_slug}.{second_slug}"
        style = rand()
        if style < 0.6:
            local = f"{given_slug}.{surname_slug}{number}"
        elif style < 0.85:
            local = f"{given_slug[0]}{surname_slug}{number}"
        else:
            local = f"{given_slug}_{surname_slug}{number}"
        source, days = sources[int(rand() * len(sources))]
        yield (
            f"{local}@{DOMAINS[int(rand() * 3)]}",
            f"{given} {surname}",
            country,
            languages[int(rand() * len(languages))],
            interests[int(rand() * len(interests))],
            statuses[int(rand() * len(statuses))],
            days[int(rand() * len(days))] + minutes[int(rand() * 1440)] + seconds[int(rand() * 60)],
            source,
        )


def _weighted_table(weights: dict) -> tuple:
    """Each value repeated by its weight, so a weighted draw is one index into a tuple."""
    return tuple(value for value, weight in weights.items() for _ in range(weight))


def _pool(spec: tuple[str, str, float]) -> tuple[tuple, tuple, float]:
    """A name pool as (name, address slug) pairs, so no row has to normalise Unicode."""
    givens, surnames, double_share = spec
    return (tuple((name, _slug(name)) for name in _names(givens)),
            tuple((name, _slug(name)) for name in _names(surnames)),
            double_share)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]


def _slug(name: str) -> str:
    """ASCII for the address: "Conceição" -> "conceicao", "O'Neil" -> "oneil", "Van der Berg" -> "vanderberg"."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return "".join(char for char in ascii_name if char.isalpha() or char == "-")


def _interest_combinations() -> dict[str, int]:
    """1 to 3 interest slugs joined by "|"; one interest is the most common choice."""
    slugs = [slug for slug, *_ in SEED_INTERESTS]
    weights = {1: 6, 2: 3, 3: 1}
    return {"|".join(combo): weights[size]
            for size in weights for combo in itertools.combinations(slugs, size)}


def _day_stamps(spans: tuple[tuple[date, date], ...]) -> tuple[str, ...]:
    return tuple((start + timedelta(days=offset)).isoformat()
                 for start, end in spans for offset in range((end - start).days + 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write fictional subscribers as CSV.")
    parser.add_argument("--rows", type=int, default=200, help="how many subscribers (default 200)")
    parser.add_argument("--seed", type=int, default=2026, help="same seed, same file (default 2026)")
    parser.add_argument("-o", "--output", default="-", help="CSV file to write, or - for standard output")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error(f"--rows {args.rows}: give zero or more rows")
    started = time.perf_counter()
    to_file = args.output != "-"
    with open(args.output, "w", encoding="utf-8", newline="") if to_file else nullcontext(sys.stdout) as output:
        writer = csv.writer(output, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(generate_records(args.rows, args.seed))
    elapsed = time.perf_counter() - started
    print(f"wrote {args.rows:,} rows to {args.output} in {elapsed:.2f} s "
          f"({args.rows / max(elapsed, 1e-9):,.0f} rows/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
