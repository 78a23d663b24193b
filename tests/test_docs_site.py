"""The documentation site: nav, API pages and links point at things that exist; mkdocs builds it strictly.

The static checks need nothing beyond the standard library. The build runs when mkdocs and
mkdocstrings are installed (``pip install -e '.[docs]'``) and is skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"


def _nav_pages() -> list[str]:
    """The .md files named in mkdocs.yml's nav (lines like ``- Title: path.md``)."""
    text = CONFIG.read_text()
    nav = text[text.index("\nnav:"):]
    nav = nav[: re.search(r"\n\S", nav[1:]).start() + 1]  # up to the next top-level key
    return re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.M)


def _api_modules() -> list[tuple[Path, str]]:
    return [(page, m) for page in sorted((DOCS / "api").glob("*.md"))
            for m in re.findall(r"^:::\s*([\w.]+)\s*$", page.read_text(), flags=re.M)]


def test_every_nav_entry_exists_and_the_tutorials_are_there():
    pages = _nav_pages()
    for page in ("index.md", "tutorials/quickstart.md", "tutorials/train-and-inspect.md",
                 "tutorials/segment-and-localize.md", "tutorials/export.md", "backprop.md", "api/index.md"):
        assert page in pages, f"{page} missing from the nav"
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"nav names pages that do not exist: {missing}"


def test_every_api_page_documents_modules_that_exist():
    entries = _api_modules()
    assert len(entries) >= 30
    missing = [f"{page.name}: {m}" for page, m in entries if importlib.util.find_spec(m) is None]
    assert not missing, f"API pages name modules that do not exist: {missing}"
    documented = {m for _, m in entries}
    for module in ("striate.viz.explain", "striate.viz.backward_demo", "striate.functional.conv",
                   "striate.nn.conv", "striate.autograd.tensor", "striate.train.loop"):
        assert module in documented


def test_relative_links_and_images_resolve():
    bad = []
    for page in sorted(DOCS.glob("**/*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code don't count
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#")[0]
            if path and not (page.parent / path).resolve().is_file():
                bad.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not bad, f"broken links: {bad}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocstrings_handlers.python")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(CONFIG), "-d", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    assert "WARNING" not in log, log
    yield out
    shutil.rmtree(out, ignore_errors=True)


def test_mkdocs_builds_strictly_with_the_api_reference(site):
    for page in ("index.html", "tutorials/quickstart/index.html", "tutorials/train-and-inspect/index.html",
                 "backprop/index.html", "api/viz/index.html"):
        assert (site / page).is_file(), page
    viz = (site / "api" / "viz" / "index.html").read_text()
    for anchor in ("striate.viz.explain.saliency", "striate.viz.explain.grad_cam",
                   "striate.viz.backward_demo.backward_demo", "striate.viz.filters.filter_grid"):
        assert f'id="{anchor}"' in viz, anchor
    assert "gradient of one class score" in viz  # the docstring's text made it into the page
    assert (site / "img" / "backward" / "conv_dx.png").is_file()
