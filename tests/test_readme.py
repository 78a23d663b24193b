"""The README's two commands are the contract with a new user; CI must run the same test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands for a fresh machine", 1)[1].split("\n## ", 1)[0]
    # the first two shell blocks are the contract; later ones show further usage
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)[:2]


def test_readme_has_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "striate train" in commands[0] and "pytest" in commands[1]
    assert "pip install" in commands[0] and "pip install" in commands[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = _readme_commands()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines(), f"{test_cmd!r} not found in .ci/run"
