"""Every ```python block of README.md and docs/*.md runs as written (fast tier: the examples use small sizes).

Blocks of one file run in order in one namespace, in a scratch folder that holds a link to ``configs/``. A block
that needs a download, a GPU or a dataset is skipped when the line just before its fence is
``<!-- docs-test: skip (the reason) -->``; use it sparingly.
"""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b.*-->")
FENCE = re.compile(r"^(\s*)```+\s*python\s*$")


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """``(first line number, code, skipped)`` of every ```python block of a markdown text."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        skipped = i > 0 and bool(SKIP.search(lines[i - 1]))
        indent, start, body = len(m.group(1)), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:])
            i += 1
        blocks.append((start + 1, "\n".join(body), skipped))
        i += 1
    return blocks


def test_block_parser_reads_fences_and_skip_markers():
    text = "x\n```python\na = 1\n```\n<!-- docs-test: skip (needs a checkpoint) -->\n```python\nb = 2\n```\n```bash\nls\n```"
    assert python_blocks(text) == [(3, "a = 1", False), (7, "b = 2", True)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(doc, tmp_path, monkeypatch):
    blocks = python_blocks(doc.read_text())
    if not any(not skipped for _, _, skipped in blocks):
        pytest.skip("no python block to run")
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__docs__"}
    for line, code, skipped in blocks:
        if skipped:
            continue
        try:
            exec(compile(code, f"{doc.name}:{line}", "exec"), namespace)
        except Exception as err:
            pytest.fail(f"{doc.relative_to(ROOT)} block at line {line} fails: {type(err).__name__}: {err}")
