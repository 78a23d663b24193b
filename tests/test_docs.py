"""Every ```python block of the docs (and the README) runs, in order, in one namespace per file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("**/*.md")) + [ROOT / "README.md"]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_snippets_run(page, capsys):
    namespace: dict = {"__name__": "__doc_snippet__"}
    for k, block in enumerate(_blocks(page)):
        try:
            exec(compile(block, f"{page.name}[block {k}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"{page.name} block {k} failed: {exc!r}\n{block}") from exc
