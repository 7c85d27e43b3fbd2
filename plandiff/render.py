"""Deterministic Markdown for a plan diff (same input, byte-identical output)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from plandiff.diff import Flag, PropertyChange, StackDiff, is_absent
from plandiff.migrations import MigrationDiff
from plandiff.model import SECRET

MARK = "🚩"
VALUE_WIDTH = 120


@dataclass
class StackReport:
    stack: str
    resources: StackDiff
    migrations: MigrationDiff

    @property
    def flags(self) -> list[Flag]:
        return [*self.resources.flags, *self.migrations.flags]

    @property
    def is_empty(self) -> bool:
        return not self.resources.has_changes and self.migrations.is_empty


_BACKTICK_RUNS = re.compile(r"`+")
_LINE_BREAKS = re.compile(r"[\r\n\t\v\f\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def _one_line(text: str) -> str:
    return _CONTROL.sub("\ufffd", _LINE_BREAKS.sub(" ", text))


def code(text: str, in_table: bool = True) -> str:
    """An inline code span that shows `text` literally, whatever it holds.

    Everything the report takes from the repository (file names, SQL, resource names, values)
    goes through here: inside a code span CommonMark and GitHub render no HTML, links,
    emphasis, mentions or references. The fence is one backtick longer than the longest run in
    the text, so no content can close it; line breaks become spaces (a code span cannot end
    its list item or table row); in a table cell `|` is escaped (GFM splits cells first).
    """
    text = _one_line(text)
    if in_table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(text: str, literal: str = "") -> str:
    """Text of a message, on one line, with every ASCII punctuation character backslash-escaped
    (CommonMark then renders it literally: no HTML, link, emphasis or heading); occurrences of
    `literal` (the file or resource the message is about) are shown as code."""
    if literal and literal in text:
        return code(literal, in_table=False).join(prose(part) for part in text.split(literal))
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", _one_line(text))


def value(v: Any) -> str:
    if is_absent(v):
        return "*(absent)*"
    if v == SECRET:
        return code(SECRET)
    text = json.dumps(v, sort_keys=True, ensure_ascii=False)
    if len(text) > VALUE_WIDTH:
        text = f"{text[: VALUE_WIDTH - 1]}… ({len(text)} chars)"
    return code(text)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary_line(report: StackReport) -> str:
    if report.is_empty:
        return "no changes"
    r = report.resources
    parts = [f"{len(r.added)} to add", f"{len(r.removed)} to remove", f"{len(r.changed)} to change"]
    replaced = sum(1 for c in r.changed if c.replaces)
    if replaced:
        parts.append(f"{replaced} replaced")
    if report.migrations.pending:
        parts.append(_plural(len(report.migrations.pending), "pending migration"))
    line = ", ".join(parts)
    if report.flags:
        line += f" — {MARK} {_plural(len(report.flags), 'flagged change')}"
    return line


def render_stack(report: StackReport) -> list[str]:
    out = [f"## {code(report.stack, False)}: {summary_line(report)}", ""]
    if report.is_empty:
        return out
    if report.flags:
        out += [f"### {MARK} Flagged", ""]
        out += [
            f"- **{f.kind}** · {code(f.subject, in_table=False)}: {prose(f.message, f.subject)}"
            for f in report.flags
        ]
        out.append("")
    r = report.resources
    if r.config:
        out += ["### Stack config", ""]
        out += _property_table("Key", r.config)
    for title, resources in (("Added", r.added), ("Removed", r.removed)):
        if resources:
            out += [f"### {title}", "", "| Type | Name | Component |", "|---|---|---|"]
            out += [
                f"| {code(res.type)} | {code(res.name)} | {_component(res.component)} |"
                for res in resources
            ]
            out.append("")
    if r.changed:
        out += ["### Changed", ""]
        for change in r.changed:
            res = change.resource
            verb = " — **replaced**" if change.replaces else ""
            out += [
                f"#### {code(res.type, False)} {code(res.name, False)} "
                f"({_component(res.component, False)}){verb}",
                "",
            ]
            out += _property_table("Property", change.changes)
    if r.outputs:
        out += ["### Stack outputs", ""]
        out += _property_table("Output", r.outputs)

    m = report.migrations
    if m.pending or m.removed:
        location = code(m.location + "/", in_table=False)
        out += [f"### Migrations that would become pending ({location})", ""]
        for pending in m.pending:
            out.append(f"- {code(pending.script, False)} ({pending.status})")
            for s in pending.statements:
                danger = f" — {MARK} {', '.join(s.destructive)}" if s.destructive else ""
                out.append(f"  {s.number}. line {s.line}: {code(s.first_line, False)}{danger}")
        out += [f"- {code(script, False)} (removed)" for script in m.removed]
        out.append("")
    return out


def _component(name: str, in_table: bool = True) -> str:
    return code(name, in_table) if name else "-"


def _property_table(heading: str, changes: list[PropertyChange] | tuple[PropertyChange, ...]):
    rows = [f"| {heading} | Before | After |", "|---|---|---|"]
    for c in changes:
        marker = " (forces replacement)" if c.replaces else ""
        rows.append(f"| {code(c.path)}{marker} | {value(c.before)} | {value(c.after)} |")
    return [*rows, ""]


def render_report(reports: list[StackReport], base_label: str, head_label: str) -> str:
    flags = sum(len(r.flags) for r in reports)
    out = [
        "# Offline plan diff",
        "",
        f"Base {base_label} → head {head_label}; stacks: "
        + ", ".join(code(r.stack, False) for r in reports)
        + ". Computed under the Pulumi mock engine from the stack files: no cloud "
        "credentials, no state (values only known after apply are mocked).",
        "",
    ]
    if flags:
        out += [
            f"**{MARK} {_plural(flags, 'flagged change')}**: they can destroy data or weaken "
            "protection. Read them before approving.",
            "",
        ]
    elif all(r.is_empty for r in reports):
        out += ["**No infrastructure or schema changes.**", ""]
    else:
        out += ["No flagged changes.", ""]
    for report in reports:
        out += render_stack(report)
    return "\n".join(out).rstrip("\n") + "\n"
