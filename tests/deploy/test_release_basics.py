"""Issue 17 item 8 (small part): `uns --version`, a LICENSE matching pyproject, a CHANGELOG."""

from __future__ import annotations

import platform
import subprocess
import tomllib

from tests.support.procs import REPO, uns_command

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_version_prints_the_installed_version_and_exits_0() -> None:
    done = subprocess.run(uns_command("--version"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"uns-hub {PYPROJECT['version']} (Sparkplug B 3.0, "
                           f"Python {platform.python_version()})\n")


def test_license_is_the_apache_2_text_pyproject_declares() -> None:
    assert PYPROJECT["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    for clause in ("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "1. Definitions.",
                   "9. Accepting Warranty or Additional Liability.", "END OF TERMS AND CONDITIONS"):
        assert clause in text


def test_changelog_has_an_unreleased_section_first() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings and headings[0] == "## [Unreleased]"
    unreleased = text.split("## [Unreleased]", 1)[1].split("\n## ", 1)[0]
    assert "### Added" in unreleased and "`uns --version`" in unreleased and "`uns check" in unreleased
