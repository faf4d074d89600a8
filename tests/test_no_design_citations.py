"""No tracked file and nothing the program can print or write cites the project's private design notes.

A user can open a paper section, a file of the authors' repositories or a page under docs/, but not the notes the
project was specified from. Links to our own docs pages (``docs/<page>.md``) are allowed, even where a page's name
happens to equal a note's. docs/papers.md anchors cited anywhere must exist.
"""
from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTES = ("sterf", "sma", "dense", "architecture", "ecosystem")
NOTE_RE = re.compile(r"(?<![\w-])(" + "|".join(NOTES) + r")\.md\b")
ANCHOR_RE = re.compile(r"papers\.md#([a-z0-9-]+)")


def tracked_files() -> list[Path]:
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / p for p in r.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


def design_citations(text: str, where: Path) -> list[str]:
    """Each citation of a design note in ``text`` (a file at ``where``), with 40 characters of context."""
    in_docs = where.parent == ROOT / "docs"
    found = []
    for m in NOTE_RE.finditer(text):
        page = ROOT / "docs" / m.group(0)
        own_page = page.is_file() and (
            text[max(0, m.start() - 5):m.start()] == "docs/" or (in_docs and text[m.start() - 2:m.start()] == "](")
        )
        if not own_page:
            found.append(text[max(0, m.start() - 40):m.end() + 10].replace("\n", " "))
    return found


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary files (images, archives) carry no citation a reader sees


def test_detector_flags_notes_and_allows_our_pages(tmp_path):
    note = "st" + "erf.md"  # built here so that this file itself names no note
    assert design_citations(f"see {note} §3.7 for the reshape", ROOT / "src" / "x.py")
    assert design_citations(f"(shared/design/{'s' + 'ma.md'})", ROOT / "docs" / "x.md")
    assert not design_citations("see docs/erf.md and docs/papers.md#erf-metrics", ROOT / "src" / "x.py")
    assert not design_citations("a sma_azo.md or mys" + "ma.md file", ROOT / "src" / "x.py")
    if (ROOT / "docs" / ("s" + "ma.md")).is_file():  # our own docs page of that name, linked: allowed
        assert not design_citations("[SMA](docs/" + "s" + "ma.md)", ROOT / "README.md")
        assert not design_citations("[SMA](" + "s" + "ma.md)", ROOT / "docs" / "erf.md")
        assert design_citations("[SMA](" + "s" + "ma.md)", ROOT / "src" / "x.py")


def test_no_tracked_file_cites_a_design_note():
    bad = {}
    for path in tracked_files():
        text = _text(path)
        if text and (hits := design_citations(text, path)):
            bad[str(path.relative_to(ROOT))] = hits[:3]
    assert not bad, f"{len(bad)} files cite a design note; cite docs/papers.md or the authors' files instead: {bad}"


def test_nothing_the_program_writes_cites_a_design_note():
    """Every string literal of the package (reports such as the demo's report.md, JSON metadata, errors, help)."""
    bad = []
    modules = sorted((ROOT / "src" / "spikescope").rglob("*.py"))
    assert modules, "no package modules found"
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {h}" for h in design_citations(node.value, path)]
    assert not bad, bad


def test_papers_anchors_cited_in_the_tree_exist():
    headings = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (ROOT / "docs" / "papers.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    missing = {}
    for path in tracked_files():
        text = _text(path)
        for anchor in ANCHOR_RE.findall(text or ""):
            if anchor not in headings:
                missing.setdefault(str(path.relative_to(ROOT)), []).append(anchor)
    assert not missing, f"anchors not among the headings of docs/papers.md: {missing}"
