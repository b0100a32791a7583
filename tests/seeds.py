"""The articles the bureau first sent, kept outside the repository in ../shared/seeds: tests that read
them skip with a reason in a bare clone (CI has the folder beside the clone, so they run there)."""

from __future__ import annotations

from pathlib import Path

import pytest

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
PRESS_RELEASE = SEEDS / "000_19bb182bab9ed61b.txt"
SCRAPED_PAGE = SEEDS / "002_71c9b379ce48fd1d.txt"

requires_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason=f"{SEEDS} is absent: the seed articles live "
                                    "beside the repository, not in it (CI has them)")
