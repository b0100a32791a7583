"""The interest taxonomy: slugs, their bit in subscribers.interests, and labels in every language."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlite_utils

from .normalize import InvalidValue, fold

# Words staff use for a theme that are neither its slug nor one of its labels.
SYNONYMS = {
    "infrastructure": ["ixp", "ixps", "interconnection", "peering", "infraestructura", "infraestrutura"],
    "security": ["dnssec", "cybersecurity", "seguridad", "seguranca", "securite"],
    "policy": ["governance", "internet governance", "gobernanza", "governanca", "politicas", "politiques"],
    "training": ["capacity building", "education", "capacitacion", "formacion", "formation", "capacitacao"],
    "grants": ["community grants", "development", "subvenciones", "desarrollo", "subsidios", "subventions"],
}
_SPLIT = re.compile(r"[|;,]")


@dataclass(frozen=True)
class Taxonomy:
    bits: dict[str, int]  # slug -> bit position
    labels: dict[str, dict[str, str]]  # slug -> language -> label
    _index: dict[str, str]  # folded spelling -> slug

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> "Taxonomy":
        bits, labels, index = {}, {}, {}
        for row in db.query("SELECT * FROM interests ORDER BY bit"):
            slug = row["slug"]
            bits[slug] = row["bit"]
            labels[slug] = {lang: row[f"label_{lang}"] for lang in ("en", "es", "pt", "fr")}
            for spelling in [slug, *labels[slug].values(), *SYNONYMS.get(slug, [])]:
                index[fold(spelling)] = slug
        return cls(bits, labels, index)

    @property
    def slugs(self) -> list[str]:
        return list(self.bits)

    def slug(self, spelling: str) -> str:
        key = fold(spelling)
        if key in self._index:
            return self._index[key]
        raise InvalidValue(f"unknown interest {spelling.strip()!r}; known: {', '.join(self.bits)}")

    def parse(self, text: str) -> int:
        """A list such as 'security | IXPs' (separated by | ; or ,) as a bit mask."""
        mask = 0
        for part in _SPLIT.split(text):
            if part.strip():
                mask |= 1 << self.bits[self.slug(part)]
        return mask

    def mask(self, slugs) -> int:
        mask = 0
        for slug in slugs:
            mask |= 1 << self.bits[self.slug(slug)]
        return mask

    def slugs_in(self, mask: int) -> list[str]:
        return [slug for slug, bit in self.bits.items() if mask & (1 << bit)]

    def label(self, slug: str, lang: str) -> str:
        return self.labels[slug].get(lang) or self.labels[slug]["en"]
