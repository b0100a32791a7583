"""Only the build step that pyproject.toml cannot say: compile the gettext catalogues (.po -> .mo) into the
wheel, so that an installed newsletter loads them with the standard library instead of parsing .po files
with babel at every start. A checkout (editable install) has no .mo files and compiles in memory."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po_path in Path(self.build_lib, "newsletter", "locales").glob("*/LC_MESSAGES/*.po"):
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=po_path.parts[-3], domain=po_path.stem, abort_invalid=True)
            with po_path.with_suffix(".mo").open("wb") as mo_file:
                write_mo(mo_file, catalog)


setup(cmdclass={"build_py": BuildWithCatalogues})
