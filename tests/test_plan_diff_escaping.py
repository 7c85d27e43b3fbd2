"""Whatever the report takes from the repository (migration file names, SQL excerpts, resource
and component names, property values) cannot change the comment's structure: rendered by a
CommonMark parser (markdown-it, with GFM tables), it creates no element of its own."""

from __future__ import annotations

import re
from html import unescape

from markdown_it import MarkdownIt

from plandiff.diff import Flag, PropertyChange, ResourceChange, StackDiff
from plandiff.migrations import MigrationDiff, PendingMigration, StatementSummary
from plandiff.model import Resource
from plandiff.render import StackReport, render_report

HOSTILE_NAME = "V7__x`` <img src=x onerror=alert(1)> **bold** [link](https://evil.example) |.sql"
HOSTILE_SQL = "SELECT '``</code><script>alert(1)</script>' AS `a|b` -- ````"
HOSTILE_VALUE = "``` <details open><summary>hi</summary>\n# heading"
INJECTED = ("<img", "<script", "<strong>bold", "<a ", "<details", "<h1>heading", "<summary", "<em>")


def hostile_report() -> str:
    resource = Resource(
        urn="urn:pulumi:production::appdb::x::evil",
        type="aws:rds/instance:Instance",
        name="primary <b>x</b> `",
        component="database`` <img src=y>",
    )
    resources = StackDiff(
        stack="production",
        added=[resource],
        changed=[
            ResourceChange(
                resource,
                (PropertyChange("tags.Name|x", "a", HOSTILE_VALUE),),
            )
        ],
    )
    migrations = MigrationDiff(
        location="schema",
        pending=[
            PendingMigration(
                HOSTILE_NAME, "new", (StatementSummary(1, 1, HOSTILE_SQL, ("DROP TABLE",)),)
            )
        ],
        removed=["R__<i>gone</i>.sql"],
        flags=[
            Flag(
                "destructive-migration",
                HOSTILE_NAME,
                f"{HOSTILE_NAME} statement 1 (line 1): DROP TABLE",
            ),
            Flag("migrations-invalid", "schema", "bad names:\n  - <img src=z>.sql\n# not a head"),
        ],
    )
    return render_report([StackReport("production", resources, migrations)], "`main`", "head")


def html_of(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def test_repository_text_creates_no_html_or_markdown_element():
    html = html_of(hostile_report())
    for tag in INJECTED:
        assert tag not in html, f"{tag} in\n{html}"
    assert "<i>" not in html and "<b>" not in html
    # Each repository string is still shown, literally, inside a code element.
    codes = [unescape(c) for c in re.findall(r"<code>(.*?)</code>", html, re.DOTALL)]
    for text in (HOSTILE_NAME, HOSTILE_SQL, "R__<i>gone</i>.sql", "database`` <img src=y>"):
        assert any(text in c for c in codes), (text, codes)


def test_tables_keep_their_three_columns():
    html = html_of(hostile_report())
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.DOTALL):
        assert len(re.findall(r"<t[hd]>", row)) == 3, row


def test_flag_messages_stay_in_their_list_item():
    html = html_of(hostile_report())
    flagged = html.split("Flagged", 1)[1].split("</ul>", 1)[0]
    assert flagged.count("<li>") == 2
    assert "not a head" in flagged  # the multi-line message stayed in its item
