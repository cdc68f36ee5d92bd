"""The front door and the docs: every relative link resolves, and the docs speak of the project."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    links = (target.split("#", 1)[0] for target in LINK.findall(text))
    return [t for t in links if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_readme_links_every_docs_page():
    linked = {(ROOT / t).resolve() for t in relative_links(ROOT / "README.md")}
    pages = set((ROOT / "docs").glob("*.md"))
    assert pages, "docs/ has no pages"
    assert not {p.resolve() for p in pages} - linked, "docs pages README does not link"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES[:1] + PAGES[2:], ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_speak_of_the_project(page):
    text = page.read_text(encoding="utf-8")
    found = re.findall(r"\b(?:issue \d+|this round|emulat\w*)", text, flags=re.IGNORECASE)
    assert not found, f"{page.relative_to(ROOT)} speaks of the work, not the project: {found}"
