"""Every command README.md and docs/ show works as written (tests/documented_commands.py reads
them from the documents, so a doc edit cannot drift from what is tested).

- The project's commands run, as written, in a copy of the project (the working tree, with its
  .venv), from a shell that has NOT activated the virtualenv, against the stand-ins
  `scripts/standins start` keeps running (the shell has sourced `.standins/env`, as the README's
  "Try it by hand" says). In that copy, RDS's CA bundle (certs/rds-global-bundle.pem) is the
  stand-ins' CA and the revisions the docs name (origin/main, main, v1.4.0) exist.
  Placeholders (`<arn>`, `--dsn ...`) are replaced by the stand-ins' values (PLACEHOLDERS;
  each must still be in use). Exceptions, each with its reason: `make test`/`make check`/
  `make lint`/`make typecheck` are what CI runs (.ci/run), so they are checked to be there, not
  run inside the suite; suite subsets (`.venv/bin/pytest ...`) are collected, not run again;
  the benchmark runs as written with a smoke-sized workload appended.
- External tools that cannot run here (pulumi, aws, gh, git, npm) are checked: the command
  and every option exist (botocore's service models for aws, the Pulumi CLI reference for
  pulumi), stacks named exist, config keys are declared, stack outputs are exported.
- `--help` agrees with the docs: every option a documented command uses is in its `--help`,
  and a synopsis that promises `[options]` lists every option `--help` shows.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from documented_commands import (
    ROOT,
    CommandLine,
    SimpleCommand,
    blocks,
    command_lines,
    documented_command_lines,
    inline_mentions,
    split_commands,
)

# What a shell on a fresh machine has: no virtualenv activated, no PYTHONPATH.
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"

# Documented placeholder -> what it stands for against the stand-ins (shell syntax).
PLACEHOLDERS = {
    "<arn>": '"$APPDB_SECRET_ARN"',
    "<region>": "us-east-1",
    "mysql://user@host:3306/appdb": '"$STANDIN_DSN"',
    "--dsn ...": '--dsn "$STANDIN_DSN" --ca-bundle certs/rds-global-bundle.pem',  # "as above"
    "--locations other/dir": "--locations schema",
}
# `$(pulumi stack output NAME ...)` in a project command: the stand-ins' counterpart of that
# output (the command around it runs; the pulumi part is checked like any pulumi command).
STACK_OUTPUTS = {
    "secretName": "$APPDB_SECRET_ARN",
    "appSecretName": "$APPDB_APP_SECRET_ARN",
    "readonlySecretName": "$APPDB_READONLY_SECRET_ARN",
}
_STACK_OUTPUT = re.compile(r"\$\(pulumi stack output (\w+)(?: --stack [\w-]+)?\)")
# Run by CI itself (.ci/run), not from inside the suite (`make test` would run the suite again).
CI_COMMANDS = {"make test", "make check", "make lint", "make typecheck"}
BENCHMARK = "benchmarks/bench_migrations.py"
BENCHMARK_SMOKE = (
    "--rounds 1 --migrations 20 --rtt-ms 0 --scale-rounds 1 --dump-mb 1 --inserts 1000 --files 50"
)
# A command that needs an earlier one: rolling back needs a rotation to roll back.
PRECONDITIONS = {"scripts/rollback-credentials": "scripts/standins rotate"}


def _program_path(command: SimpleCommand) -> list[str]:
    """The project command as (program, script) words: `.venv/bin/python scripts/plan` is
    `scripts/plan`; `.venv/bin/python benchmarks/x.py` keeps both."""
    words = list(command.words)
    if words[0] == ".venv/bin/python" and len(words) > 1:
        return words[1:2] if words[1].startswith("scripts/") else words[:2]
    return words[:1]


def is_installer(command: SimpleCommand) -> bool:
    """`python3 -m venv DIR` and `DIR/bin/pip install -r FILE`: installs from PyPI, checked
    (FILE pins only what scripts/setup installs, at the same versions), not run in the suite."""
    words = command.words
    if words[:3] == ("python3", "-m", "venv"):
        return True
    return command.program.endswith("/bin/pip") and words[1:2] == ("install",)


def is_external(command: SimpleCommand) -> bool:
    return command.program in {"pulumi", "aws", "gh", "git", "npm"} or is_installer(command)


# --- the documents, classified --------------------------------------------------------------


def with_stack_outputs(text: str, used: set[str] | None = None) -> str:
    def replace(match: re.Match[str]) -> str:
        if used is not None:
            used.add(f"pulumi stack output {match[1]}")
        return STACK_OUTPUTS.get(match[1], match[0])

    return _STACK_OUTPUT.sub(replace, text)


def runnable_lines() -> list[CommandLine]:
    """The project's command lines (a `$(pulumi stack output ...)` inside one is stood in for)."""
    return [
        line
        for line in documented_command_lines()
        if not line.synopsis
        and not any(is_external(c) for c in split_commands(with_stack_outputs(line.text)))
    ]


def test_every_documented_command_is_the_projects_or_a_known_external_tool() -> None:
    unknown = []
    for path in {line.path for line in documented_command_lines()}:
        for block in blocks(path):
            for line in command_lines(block):
                for command in line.commands:
                    program = command.program
                    if not (
                        is_external(command)
                        or program.startswith(("scripts/", ".venv/bin/"))
                        or program in {"make", ".", "source", "cd"}
                    ):
                        unknown.append(f"{line.where}: {program!r} in {line.text!r}")
    assert unknown == [], (
        "commands of unknown tools (add a checker, or fix the doc):\n" + "\n".join(unknown)
    )
    # The extraction itself finds what the docs hold (a broken parser must not pass quietly).
    found = {c.text for c in documented_command_lines()}
    assert "make rehearse" in found and "make test" in found
    assert any(text.startswith("scripts/standins start") for text in found)
    assert any(text.startswith("pulumi up") for text in found)


def test_every_mentioned_project_command_exists() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    missing = []
    for line in documented_command_lines() + inline_mentions():
        for command in line.commands:
            words = command.words
            if command.program == "make":
                wanted = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
                missing += [f"{line.where}: make target {t!r}" for t in wanted if t not in targets]
            elif "<" in command.program:
                continue  # `scripts/<name>`: a pattern, not a command
            elif command.program.startswith(("scripts/", ".venv/bin/python")):
                script = _program_path(command)[-1]
                if script.startswith(("scripts/", "benchmarks/")):
                    path = ROOT / script
                    if not (
                        (path.is_file() and os.access(path, os.X_OK)) or script.endswith(".py")
                    ):
                        missing.append(f"{line.where}: {script} is not an executable command")
                    elif not path.is_file():
                        missing.append(f"{line.where}: {script} does not exist")
            elif command.program == ".venv/bin/pytest":
                for word in words[1:]:
                    if word.startswith("tests/") and not list(ROOT.glob(word)):
                        missing.append(f"{line.where}: {word} matches no test file")
    assert missing == [], "\n".join(missing)


def test_what_ci_runs_includes_the_documented_make_targets_it_stands_for() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    check = re.search(r"^check:(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert check is not None
    for command in CI_COMMANDS - {"make check"}:
        assert re.search(rf"^{re.escape(command)}$", ci, re.MULTILINE), command
    assert set(check.group(1).split()) == {"lint", "typecheck", "test"}
    documented = {line.text for line in runnable_lines()}
    assert documented >= CI_COMMANDS, "an exception no document needs any more: drop it"


# --- running the project's commands ----------------------------------------------------------


@dataclass
class Sandbox:
    directory: Path
    env: dict[str, str]

    def run(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _copy_working_tree(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)  # mtimes too
    # The copy uses this checkout's virtualenv, entry by entry, with a setup stamp of its own
    # made now: make in the copy sees the setup as done and never runs scripts/setup into the
    # shared .venv (which would point its editable install at this temporary copy).
    venv, shared = destination / ".venv", (ROOT / ".venv").resolve()
    venv.mkdir()
    for entry in shared.iterdir():
        if entry.name != ".setup-stamp":
            (venv / entry.name).symlink_to(entry)
    (venv / ".setup-stamp").touch()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("documented") / "appdb"
    _copy_working_tree(directory)
    git_env = {
        "GIT_AUTHOR_NAME": "docs",
        "GIT_AUTHOR_EMAIL": "docs@example.test",
        "GIT_COMMITTER_NAME": "docs",
        "GIT_COMMITTER_EMAIL": "docs@example.test",
    }
    env = {"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    box = Sandbox(directory, {**env, **git_env})
    prepared = box.run(
        "git init -q -b main && git add -A && git commit -q -m docs && "
        "git update-ref refs/remotes/origin/main HEAD && git tag v1.4.0 && "
        "scripts/standins start --stack production"
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    state = json.loads((directory / ".standins" / "state.json").read_text())
    (directory / "certs").mkdir(exist_ok=True)
    shutil.copy(state["ca_bundle"], directory / "certs" / "rds-global-bundle.pem")
    password = box.run(
        ". .standins/env && .venv/bin/python -c 'import boto3, json, os; print(json.loads("
        'boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["APPDB_SECRET_ARN"])'
        '["SecretString"])["password"])\''
    )
    assert password.returncode == 0, password.stderr
    box.env["STANDIN_DSN"] = (
        f"mysql://{state['user']}:{password.stdout.strip()}@{state['host']}:{state['port']}/"
        f"{state['database']}"
    )
    try:
        yield box
    finally:
        box.run("scripts/standins stop")


def _as_run(line: CommandLine, used: set[str]) -> tuple[str, str]:
    """(how the line runs here, why it differs from the doc, or "")."""
    text = with_stack_outputs(line.text, used)
    for placeholder, value in PLACEHOLDERS.items():
        if placeholder in text:
            used.add(placeholder)
            text = text.replace(placeholder, value)
    words = text.split()
    if words[0] == ".venv/bin/pytest":
        return f"{text} --collect-only", "suite subset: collected, not run again"
    if BENCHMARK in words[:2]:
        return f"{text} {BENCHMARK_SMOKE}", "benchmark: smoke-sized"
    return text, ""


def _statements(text: str) -> list[str]:
    """`a ; b` as two statements, so each one's exit status is checked (quote-aware)."""
    parts, current, quote = [], "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ";":
            parts.append(current.strip())
            current = ""
            continue
        current += char
    return [p for p in [*parts, current.strip()] if p]


def _session(
    lines: list[CommandLine], used: set[str], already_run: set[str]
) -> tuple[str, list[tuple[str, str, str]]]:
    """One bash script running a block's lines in order (state such as `. env` carries over),
    and (doc line, statement, note) per statement, in order."""
    script = ["set -o pipefail"]
    if any(line.text.startswith(USES_STANDINS) for line in lines):
        script.append(". .standins/env || exit 99")  # as the README's "Try it by hand" says
    statements: list[tuple[str, str, str]] = []
    texts = [line.text for line in lines]
    for program, needs in PRECONDITIONS.items():
        first = next((i for i, t in enumerate(texts) if t.startswith(program)), None)
        if first is not None and not any(t.startswith(needs) for t in texts[:first]):
            script.append(f"{needs} > /dev/null || exit 99")
    for line in lines:
        if line.text in CI_COMMANDS:
            continue
        text, note = _as_run(line, used)
        for statement in _statements(text):
            if statement in already_run:
                continue  # the same command, in the same environment, ran in an earlier block
            already_run.add(statement)
            index = len(statements)
            statements.append((line.where, statement, note))
            script.append(
                f"start=$EPOCHREALTIME; {{ {statement} ; }} > out.{index} 2>&1; "
                f"echo $? $start $EPOCHREALTIME > rc.{index}"
            )
    return "\n".join(script), statements


def _blocks_to_run() -> list[list[CommandLine]]:
    by_block: dict[tuple[Path, int], list[CommandLine]] = {}
    runnable = {(line.path, line.line) for line in runnable_lines()}
    for path in {line.path for line in runnable_lines()}:
        for block in blocks(path):
            lines = [line for line in command_lines(block) if (line.path, line.line) in runnable]
            if lines:
                by_block[(path, block.line)] = lines
    # Stopping the stand-ins comes last: the other blocks need them.
    return sorted(
        by_block.values(),
        key=lambda ls: (any("standins stop" in line.text for line in ls), ls[0].where),
    )


# Commands that use the stand-ins `scripts/standins start` keeps (their state changes: a
# rotation, a rollback, a migration): their blocks run one after the other, the one that stops
# the stand-ins last. The other blocks run alongside them, two at a time.
USES_STANDINS = ("scripts/migrate", "scripts/rollback-credentials", "scripts/standins")


def _run_block(sandbox: Sandbox, work: Path, script: str, where: str) -> None:
    work.mkdir()
    script = script.replace("out.", f"{work}/out.").replace("rc.", f"{work}/rc.")
    completed = sandbox.run(script, timeout=600)
    assert completed.returncode != 99, f"{where}: precondition failed: {completed.stderr}"


def test_every_project_command_in_the_docs_runs_as_written(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    shared_stamp = ROOT / ".venv" / ".setup-stamp"
    stamp_before = shared_stamp.stat().st_mtime_ns if shared_stamp.exists() else None
    used: set[str] = set()
    already_run: set[str] = set()
    sessions = [_session(lines, used, already_run) for lines in _blocks_to_run()]
    sessions = [(script, statements) for script, statements in sessions if statements]
    shared = [
        n
        for n, (_, statements) in enumerate(sessions)
        if any(statement.startswith(USES_STANDINS) for _, statement, _ in statements)
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(
                lambda numbers: [
                    _run_block(sandbox, tmp_path / f"block-{n}", sessions[n][0], str(n))
                    for n in numbers
                ],
                shared,
            )
        ]
        jobs += [
            pool.submit(_run_block, sandbox, tmp_path / f"block-{n}", script, str(n))
            for n, (script, _) in enumerate(sessions)
            if n not in shared
        ]
        for job in jobs:
            job.result()
    failures, ran = [], []
    for number, (_, statements) in enumerate(sessions):
        work = tmp_path / f"block-{number}"
        for index, (where, statement, note) in enumerate(statements):
            rc_file, out_file = work / f"rc.{index}", work / f"out.{index}"
            recorded = rc_file.read_text().split() if rc_file.exists() else []
            code = int(recorded[0]) if recorded else None
            seconds = float(recorded[2]) - float(recorded[1]) if recorded else 0.0
            output = out_file.read_text(errors="replace") if out_file.exists() else ""
            ran.append((where, statement, note, code))
            print(f"{seconds:6.1f}s  exit {code}  {where}  {statement}  {note}")
            problem = _judge(statement, code, output)
            if problem:
                failures.append(f"{where}: `{statement}` {problem}\n{output[-1500:]}")
    assert failures == [], "\n\n".join(failures)
    stamp_after = shared_stamp.stat().st_mtime_ns if shared_stamp.exists() else None
    assert stamp_after == stamp_before, "the copy's make ran scripts/setup into the shared .venv"
    stale = set(PLACEHOLDERS) - used
    assert stale == set(), f"placeholders no document uses any more: {stale}"
    assert any(u.startswith("pulumi stack output") for u in used)
    unresolved = [s for _, s, _, _ in ran if re.search(r"<[a-z][^>]*>|\s\.\.\.(\s|$)", s)]
    assert unresolved == [], f"placeholders without a stand-in value: {unresolved}"
    assert len(ran) >= 20, ran  # the docs hold more than that; fewer means the parser broke


def _judge(statement: str, code: int | None, output: str) -> str:
    if code is None:
        return "did not run"
    if "ModuleNotFoundError" in output or "Traceback" in output:
        return f"exited {code} with a traceback"
    if BENCHMARK in statement:
        # A smoke-sized run may miss a speed target (exit 1); it must run to the end.
        return "" if code in (0, 1) and "targets, checked" in output else f"exited {code}"
    if "--collect-only" in statement:
        counted = re.search(r"(\d+)(?:/\d+)? tests? collected", output)
        if code != 0 or not counted or int(counted.group(1)) == 0:
            return f"collected no test (exit {code})"
        return ""
    return "" if code == 0 else f"exited {code}"


# --- external tools: checked, not run --------------------------------------------------------

# The Pulumi CLI reference (https://www.pulumi.com/docs/iac/cli/commands/): the commands the
# docs use and their options (pulumi_up, pulumi_preview, pulumi_stack_output, ...).
PULUMI_GLOBAL = {"--cwd", "-C", "--non-interactive", "--color", "--help", "-h", "--emoji"}
PULUMI_COMMANDS: dict[tuple[str, ...], set[str]] = {
    (): set(),
    ("up",): {"--stack", "-s", "--diff", "--refresh", "-r", "--target", "-t", "--yes", "-y",
              "--skip-preview", "-f", "--config", "-c", "--expect-no-changes", "--message",
              "-m", "--target-dependents", "--parallel", "-p", "--policy-pack",
              "--policy-pack-config"},
    ("preview",): {"--stack", "-s", "--diff", "--refresh", "-r", "--target", "-t", "--json",
                   "-j", "--expect-no-changes", "--config", "-c", "--message", "-m",
                   "--policy-pack", "--policy-pack-config"},
    ("refresh",): {"--stack", "-s", "--yes", "-y", "--skip-preview", "--expect-no-changes"},
    ("destroy",): {"--stack", "-s", "--yes", "-y", "--skip-preview", "--target", "-t"},
    ("login",): {"--local", "-l", "--cloud-url", "-c", "--default-org", "--insecure"},
    ("config", "set"): {"--stack", "-s", "--secret", "--plaintext", "--path"},
    ("config", "rm"): {"--stack", "-s", "--path"},
    ("version",): set(),
    ("install",): {"--reinstall", "--no-plugins", "--no-dependencies"},
    ("stack", "init"): {"--stack", "-s", "--secrets-provider", "--copy-config-from",
                        "--no-select"},
    ("stack", "select"): {"--stack", "-s", "--create", "-c", "--secrets-provider"},
    ("stack", "output"): {"--stack", "-s", "--show-secrets", "--json", "-j", "--shell"},
}  # fmt: skip
# AWS CLI options valid on every command (https://docs.aws.amazon.com/cli/latest/reference/).
AWS_GLOBAL = {"--region", "--output", "--query", "--profile", "--endpoint-url", "--no-cli-pager",
              "--debug", "--no-verify-ssl", "--cli-input-json"}  # fmt: skip
# AWS CLI commands that are CLI customizations, not API operations.
AWS_CUSTOM = {("sso", "login"): {"--profile", "--no-browser", "--sso-session"}}
AWS_SERVICE_NAMES = {"s3api": "s3"}  # CLI name -> botocore name where they differ
# gh's top-level commands (https://cli.github.com/manual/gh).
GH_COMMANDS = {"api", "auth", "issue", "pr", "release", "repo", "run", "secret", "variable",
               "workflow", "environment"}  # fmt: skip


def _placeholder(word: str) -> bool:
    return "<" in word or "$" in word or word == "..."


@functools.cache
def _stacks() -> set[str]:
    return {p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml")}


@functools.cache
def _config_keys() -> set[str]:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    return {k if ":" in k else f"appdb:{k}" for k in declared} | {"aws:region"}


@functools.cache
def _stack_outputs() -> set[str]:
    from infra_plans import plan_of

    return set(plan_of("staging").outputs)


def check_pulumi(words: tuple[str, ...]) -> list[str]:
    positional = [w for w in words[1:] if not w.startswith("-")]
    path = next(
        (key for n in (2, 1, 0) for key in [tuple(positional[:n])] if key in PULUMI_COMMANDS),
        None,
    )
    if path is None or (path == () and positional):
        return [f"unknown pulumi command {' '.join(positional[:2])!r}"]
    problems = []
    allowed = PULUMI_COMMANDS[path] | PULUMI_GLOBAL
    for index, word in enumerate(words):
        flag = word.split("=", 1)[0]
        if flag.startswith("-") and flag not in allowed:
            problems.append(f"pulumi {' '.join(path)}: unknown option {flag}")
        if flag in {"--stack", "-s"} and index + 1 < len(words):
            stack = words[index + 1]
            if not _placeholder(stack) and stack not in _stacks():
                problems.append(f"no stack {stack!r} (no Pulumi.{stack}.yaml)")
    rest = positional[len(path) :]
    named = rest[0] if rest and not _placeholder(rest[0]) else None
    if named and path in {("stack", "init"), ("stack", "select")} and named not in _stacks():
        problems.append(f"no stack {named!r} (no Pulumi.{named}.yaml)")
    if named and path[0] == "config" and named not in _config_keys():
        problems.append(f"config key {named!r} is not declared (Pulumi.yaml)")
    if named and path == ("stack", "output") and named not in _stack_outputs():
        problems.append(f"the program exports no output {named!r}")
    return problems


def check_aws(words: tuple[str, ...]) -> list[str]:
    import botocore.session

    if len(words) < 3:
        return [] if len(words) == 1 else [f"aws {' '.join(words[1:])}: incomplete"]
    service, operation = words[1], words[2]
    flags = [w.split("=", 1)[0] for w in words[3:] if w.startswith("--")]
    if (service, operation) in AWS_CUSTOM:
        allowed = AWS_CUSTOM[(service, operation)] | AWS_GLOBAL
        return [f"aws {service} {operation}: unknown option {f}" for f in flags if f not in allowed]
    session = botocore.session.get_session()
    name = AWS_SERVICE_NAMES.get(service, service)
    if name not in session.get_available_services():
        return [f"aws: unknown service {service!r}"]
    model = session.get_service_model(name)
    wanted = operation.replace("-", "").lower()
    operations: list[str] = list(model.operation_names)  # type: ignore[arg-type]  # a cached list
    found = [op for op in operations if op.lower() == wanted]
    if not found:
        return [f"aws {service}: no operation {operation!r}"]
    shape = model.operation_model(found[0]).input_shape
    members = {m.lower() for m in getattr(shape, "members", {})}
    return [
        f"aws {service} {operation}: unknown option {flag}"
        for flag in flags
        if flag not in AWS_GLOBAL and flag[2:].replace("-", "").lower() not in members
    ]


def check_git(words: tuple[str, ...]) -> list[str]:
    if len(words) < 2:
        return []
    probe = subprocess.run(["git", words[1], "-h"], capture_output=True, text=True, check=False)
    usage = probe.stdout + probe.stderr
    return [] if f"usage: git {words[1]}" in usage else [f"git has no command {words[1]!r}"]


def check_gh(words: tuple[str, ...]) -> list[str]:
    return [] if len(words) < 2 or words[1] in GH_COMMANDS else [f"gh: unknown {words[1]!r}"]


def check_npm(words: tuple[str, ...]) -> list[str]:
    problems = []
    if len(words) > 1 and words[1] not in {"ci", "install", "run", "exec"}:
        problems.append(f"npm {words[1]}: not a command these docs expect")
    if "--prefix" in words:
        prefix = words[words.index("--prefix") + 1]
        if not (ROOT / prefix / "package-lock.json").is_file():
            problems.append(f"npm --prefix {prefix}: no package-lock.json there")
    return problems


def check_installer(words: tuple[str, ...]) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    if words[0] == "python3":
        return [] if len(words) == 4 else [f"python3 -m venv: expected one directory: {words}"]
    if "-r" not in words:
        return [f"{words[0]}: install only from a requirements file (-r FILE)"]
    path = ROOT / words[words.index("-r") + 1]
    if not path.is_file():
        return [f"{path.relative_to(ROOT)} does not exist"]
    problems = []
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        name, _, pinned = requirement.partition("==")
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            problems.append(
                f"{path.relative_to(ROOT)}: {requirement}, but scripts/setup installs "
                f"{name} {installed or '(nothing)'}"
            )
    return problems


def check_external(words: tuple[str, ...]) -> list[str]:
    command = SimpleCommand(words)
    if is_installer(command):
        return check_installer(words)
    return CHECKERS[words[0]](words)


CHECKERS = {
    "pulumi": check_pulumi,
    "aws": check_aws,
    "git": check_git,
    "gh": check_gh,
    "npm": check_npm,
}


def test_external_commands_name_real_commands_options_stacks_and_keys() -> None:
    problems, checked = [], 0
    for line in documented_command_lines() + inline_mentions():
        for command in line.commands:
            if is_external(command):
                checked += 1
                problems += [f"{line.where}: {p}" for p in check_external(command.words)]
    assert problems == [], "\n".join(problems)
    assert checked >= 30  # pulumi and aws commands fill the deploy sections


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        ("pulumi up --stack prod", "no stack 'prod'"),
        ("pulumi config set appdb:readReplicas 2", "not declared"),
        ("pulumi stack output --show-secrets writerEndpont", "no output 'writerEndpont'"),
        ("pulumi upp", "unknown pulumi command"),
        ("pulumi preview --dif", "unknown option --dif"),
        ("aws secretsmanager update-secret-version-stage --secret-id x --move-to x", "--move-to"),
        ("aws secretsmanager describe-secrets --secret-id x", "no operation"),
        ("git archiv", "no command"),
        ("policy/venv/bin/pip install pulumi", "requirements file"),
        ("policy/venv/bin/pip install -r requirements-typo.txt", "does not exist"),
    ],
)
def test_the_external_checkers_catch_drift(words: str, problem: str) -> None:
    split = tuple(words.split())
    found = check_external(split)
    assert any(problem in p for p in found), found


# --- --help and the docs agree ----------------------------------------------------------------


@functools.cache
def help_text(tool: tuple[str, ...], subcommand: str | None) -> str:
    completed = subprocess.run(
        [*tool, *([subcommand] if subcommand else []), "--help"],
        cwd=ROOT,
        env={"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, f"{' '.join(tool)} --help: {completed.stderr}"
    return completed.stdout


def _choices(tool: tuple[str, ...]) -> list[str]:
    usage = help_text(tool, None).split("\n\n", 1)[0]
    found = re.search(r"\{([\w-]+(?:,[\w-]+)+)\}", usage)
    return found.group(1).split(",") if found else []


def _help_options(text: str) -> set[str]:
    return set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", text, re.MULTILINE))


# Make targets that pass ARGS=... on to a command (Makefile).
MAKE_COMMANDS = {"rehearse": (".venv/bin/python", "-m", "rehearsal.cli")}


def _tool_and_subcommand(command: SimpleCommand) -> tuple[tuple[str, ...], str | None] | None:
    """The project command to ask for --help (None: not one with a --help), and its
    subcommand (the first argument, when it is one of the command's choices)."""
    if command.program == "make":
        target = next((w for w in command.words[1:] if "=" not in w), "")
        return (MAKE_COMMANDS[target], None) if target in MAKE_COMMANDS else None
    tool = tuple(_program_path(command))
    if not tool[-1].startswith(("scripts/", "benchmarks/")) or tool[-1] == "scripts/setup":
        return None
    if not (ROOT / tool[-1]).is_file():
        return None  # a missing command fails test_every_mentioned_project_command_exists
    skip = 2 if command.words[0] == ".venv/bin/python" else 1
    arguments = command.words[skip:]
    first = arguments[0] if arguments else None
    return tool, (first if first in _choices(tool) else None)


def _prefetch_help(lines: list[CommandLine]) -> None:
    """Ask every command for its --help side by side (each is a fresh Python)."""
    tools = {
        tuple(_program_path(c))
        for line in lines
        for c in line.commands
        if c.program.startswith(("scripts/", ".venv/bin/python"))
        and _program_path(c)[-1].startswith(("scripts/", "benchmarks/"))
        and _program_path(c)[-1] != "scripts/setup"
        and (ROOT / _program_path(c)[-1]).is_file()
    } | set(MAKE_COMMANDS.values())
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda tool: help_text(tool, None), tools))
        subcommands = [(tool, choice) for tool in tools for choice in _choices(tool)]
        list(pool.map(lambda pair: help_text(*pair), subcommands))


def test_every_documented_option_is_in_the_commands_help() -> None:
    problems, checked = [], 0
    _prefetch_help(documented_command_lines() + inline_mentions())
    for line in documented_command_lines() + inline_mentions():
        for command in line.commands:
            found = _tool_and_subcommand(command)
            if not found:
                continue
            tool, subcommand = found
            text = help_text(tool, subcommand)
            flags = command.flags
            if command.program == "make":  # make rehearse ARGS=--full-plan
                passed = [w.split("=", 1)[1] for w in command.words if w.startswith("ARGS=")]
                flags = [f for value in passed for f in value.split() if f.startswith("-")]
            for flag in flags:
                checked += 1
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                    named = " ".join([*tool, subcommand or ""]).strip()
                    problems.append(f"{line.where}: {named} --help has no {flag}")
    assert problems == [], "\n".join(problems)
    assert checked >= 15


def test_a_synopsis_promising_options_lists_every_option_and_command() -> None:
    synopses = 0
    for path in {line.path for line in documented_command_lines()}:
        for block in blocks(path):
            lines = [line for line in command_lines(block) if line.synopsis]
            if not lines or "[options]" not in lines[0].text:
                continue
            synopses += 1
            tool_found = _tool_and_subcommand(lines[0].commands[0])
            assert tool_found, lines[0].where
            tool = tool_found[0]
            documented = set(re.findall(r"--[\w-]+", "\n".join(t for _, t in block.lines)))
            commands = re.search(r"\{([\w,-]+)\}", lines[0].text)
            assert commands, lines[0].where
            assert set(commands.group(1).split(",")) == set(_choices(tool)), lines[0].where
            options = set()
            for subcommand in _choices(tool) or [None]:
                options |= _help_options(help_text(tool, subcommand))
            options -= {"--help"}
            assert options - documented == set(), f"{block.where}: not in the synopsis"
            assert documented - options == set(), f"{block.where}: not in --help"
    assert synopses >= 1
