"""The reference in docs/ covers every command, flag and setting, and the links between pages resolve.

The command line's parser (kbench/cli.py) and TrialConfig's fields are walked
here, so a flag or a setting added without its documentation fails a test.
Reads Markdown and builds the argparse parser only: no Keras import, fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from kbench.cli_parser import _add_overrides, build_parser
from kbench.config import TrialConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
QUICKSTART = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[all]" && kbench run quickstart '
              "&& kbench results quickstart")
TEST_COMMAND = "python3 -m pip install tox && tox"


def without_code_blocks(text: str) -> str:
    """Markdown with its fenced code blocks blanked out (their lines kept, so line numbers stay)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return "\n".join(lines)


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of each Markdown heading outside code blocks."""
    found = []
    for line in without_code_blocks(text).splitlines():
        match = re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as '-', repeats numbered."""
    seen: dict[str, int] = {}
    result = set()
    for _, title in headings(text):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def sections(text: str) -> dict[str, str]:
    """Each heading's title -> its text up to the next heading of the same or a higher level."""
    lines = without_code_blocks(text).splitlines()
    starts = [(i, len(m.group(1)), m.group(2)) for i, line in enumerate(lines)
              if (m := re.match(r"(#{1,6})\s+(.*)", line))]
    result = {}
    for n, (start, level, title) in enumerate(starts):
        end = next((s for s, lv, _ in starts[n + 1:] if lv <= level), len(lines))
        result[title] = "\n".join(lines[start + 1:end])
    return result


def mentions(text: str, flag: str) -> bool:
    """`flag` (e.g. --data-dir, -q) appears as a whole word, not as part of a longer flag."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def leaf_commands(parser: argparse.ArgumentParser, path: str = ""):
    """(command path such as 'data check', its parser) for every command that takes no further subcommand."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if path and not subparsers:
        yield path, parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from leaf_commands(sub, f"{path} {name}".strip())


def every_parser(parser: argparse.ArgumentParser, path: str = ""):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_parser(sub, f"{path} {name}".strip())


def test_every_command_and_flag_is_in_the_command_reference():
    """docs/commands.md has a section per command (its heading names `kbench COMMAND`) naming each of its flags;
    the run-selection flags may instead be described once, in the section the command's section links to."""
    reference = sections((DOCS / "commands.md").read_text())
    shared_parser = argparse.ArgumentParser()
    _add_overrides(shared_parser)
    shared_flags = {flag for action in shared_parser._actions for flag in action.option_strings}
    shared_text = reference["Run-selection flags"]
    missing = []
    for command, parser in leaf_commands(build_parser()):
        name = f"kbench {command}"
        text = "\n".join(body for title, body in reference.items()
                         if any(span == name or span.startswith(name + " ") for span in re.findall(r"`([^`]+)`", title)))
        if not text:
            missing.append(f"a section titled `{name}`")
            continue
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help") or mentions(text, flag):
                    continue
                if flag in shared_flags and "(#run-selection-flags)" in text and mentions(shared_text, flag):
                    continue
                missing.append(f"{name} {flag}")
    assert not missing, f"not in docs/commands.md: {', '.join(missing)}"


def documented_default(field: dataclasses.Field) -> str:
    """A field's default as the settings table writes it: as typed on the command line."""
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "+".join(map(str, value))
    if value == "":
        return "(empty)"
    return str(value)


def test_every_setting_is_in_the_settings_table_with_its_default():
    """docs/settings.md's table has one row per TrialConfig field, with the field's current default, and no others."""
    rows = {}
    table = sections((DOCS / "settings.md").read_text())["Every field of `TrialConfig`"]
    for line in table.splitlines():
        match = re.match(r"\|\s*`(\w+)`\s*\|([^|]*)\|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip().strip("`")
    fields = dataclasses.fields(TrialConfig)
    missing = [f.name for f in fields if f.name not in rows]
    assert not missing, f"TrialConfig fields not in docs/settings.md's table: {', '.join(missing)}"
    wrong = [f"{f.name}: docs say {rows[f.name]!r}, the code {documented_default(f)!r}"
             for f in fields if rows[f.name] != documented_default(f)]
    assert not wrong, "docs/settings.md's defaults differ from TrialConfig's: " + "; ".join(wrong)
    stale = set(rows) - {f.name for f in fields}
    assert not stale, f"docs/settings.md documents settings TrialConfig lacks: {', '.join(sorted(stale))}"


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Relative links of a Markdown page whose file, or heading anchor in a Markdown file, does not exist."""
    text = without_code_blocks(page.read_text())
    broken = []
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{page.relative_to(root)}: {target} (no such heading)")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert not broken_links(page)


def test_the_link_check_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n")
    page.write_text("[ok](other.md#a-section) [gone](missing.md) [bad anchor](other.md#nowhere) "
                    "[web](https://example.com/x.md)\n```\n[in code](ignored.md)\n```\n")
    assert broken_links(page, tmp_path) == ["page.md: missing.md (no such file)",
                                            "page.md: other.md#nowhere (no such heading)"]


def test_every_help_ends_with_a_reference_that_exists():
    """`kbench --help` and each command's --help name a docs page (and section) that exist."""
    wrong = []
    for command, parser in every_parser(build_parser()):
        references = re.findall(r"(docs/[\w.-]+\.md)(?:#([\w-]+))?", parser.epilog or "")
        if not references:
            wrong.append(f"kbench {command}: no docs page in its --help")
        for page, anchor in references:
            if not (ROOT / page).exists() or (anchor and anchor not in anchors((ROOT / page).read_text())):
                wrong.append(f"kbench {command}: {page}#{anchor}")
    assert not wrong, "; ".join(wrong)


def test_readme_is_short_and_keeps_the_two_commands():
    """The README is an introduction (the reference is in docs/), and CI runs exactly its test command."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    assert QUICKSTART in readme and TEST_COMMAND in readme
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", " "))]
    assert TEST_COMMAND in ci
