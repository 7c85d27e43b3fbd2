"""Deterministic Markdown for a plan diff (same input, byte-identical output)."""

from __future__ import annotations

import json
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


def code(text: str) -> str:
    """An inline code span that survives any content, including inside a table cell."""
    text = text.replace("|", "\\|").replace("\n", " ")
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
    out = [f"## `{report.stack}`: {summary_line(report)}", ""]
    if report.is_empty:
        return out
    if report.flags:
        out += [f"### {MARK} Flagged", ""]
        out += [f"- **{f.kind}** · {code(f.subject)}: {f.message}" for f in report.flags]
        out.append("")
    r = report.resources
    if r.config:
        out += ["### Stack config", ""]
        out += _property_table("Key", r.config)
    for title, resources in (("Added", r.added), ("Removed", r.removed)):
        if resources:
            out += [f"### {title}", "", "| Type | Name | Component |", "|---|---|---|"]
            out += [
                f"| {code(res.type)} | {code(res.name)} | {res.component or '-'} |"
                for res in resources
            ]
            out.append("")
    if r.changed:
        out += ["### Changed", ""]
        for change in r.changed:
            res = change.resource
            verb = " — **replaced**" if change.replaces else ""
            out += [
                f"#### {code(res.type)} {code(res.name)} ({res.component or '-'}){verb}",
                "",
            ]
            out += _property_table("Property", change.changes)
    if r.outputs:
        out += ["### Stack outputs", ""]
        out += _property_table("Output", r.outputs)

    m = report.migrations
    if m.pending or m.removed:
        out += [f"### Migrations that would become pending ({code(m.location + '/')})", ""]
        for pending in m.pending:
            out.append(f"- {code(pending.script)} ({pending.status})")
            for s in pending.statements:
                danger = f" — {MARK} {', '.join(s.destructive)}" if s.destructive else ""
                out.append(f"  {s.number}. line {s.line}: {code(s.first_line)}{danger}")
        out += [f"- {code(script)} (removed)" for script in m.removed]
        out.append("")
    return out


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
        + ", ".join(code(r.stack) for r in reports)
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
