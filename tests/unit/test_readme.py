"""The README documents every setting and opens with the two commands."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`(FILESTREAM_[A-Z_]+)`", README))
    names = {env for env, _value, _doc in Settings().describe()}
    assert names <= documented, f"undocumented settings: {sorted(names - documented)}"


def test_readme_opens_with_the_run_and_test_commands() -> None:
    block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./dev run", "./dev test"]
    assert (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text().count("./dev test") == 1
