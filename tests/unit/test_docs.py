"""The README and docs/ name only what exists: files, links, and make targets."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAMED = re.compile(r"(?<![\w/])((?:pipeline|dags|bench|tests|expectations)/[\w/.-]*\w)")
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_file_link_and_target_exists(page: Path) -> None:
    text = page.read_text()
    paths = set(NAMED.findall(text))
    missing = [p for p in paths if "<" not in p and not (ROOT / p).exists()]
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    broken = [u for u in links if "://" not in u and not (page.parent / u).exists()]
    targets = set(re.findall(r"\bmake ([a-z][a-z-]*)", text))
    unknown = sorted(targets - TARGETS)
    assert (missing, broken, unknown) == ([], [], []), page
