"""The README's examples, run the way a new user runs them: in order, with bash, against a gateway
started as ``make run`` starts it, and compared with the outputs the README shows.

How the README marks what is run and what is expected (it says so in a comment of its own, near
the top):

- every ```` ```sh ```` block is run, in README order, by one bash in a scratch directory whose
  ``.venv`` points at the repository's; a block whose fence follows a ``<!-- not run: WHY -->``
  line is not (``make`` itself, a remote cluster);
- a command is as many lines as bash needs to read a complete command; each must exit 0;
- ``# -> TEXT`` lines right after a command are the lines it prints, and a fence without a
  language right after a ```` ```sh ```` block (blank lines between at most) is what the block's
  last command prints; ISO-8601 timestamps match any timestamp, everything else must be equal;
- every block that is run shows what at least one of its commands prints, so an example cannot
  lose its output (or the extractor its way) without this test noticing;
- the README's ports (8082 and 9092 of ``make run``, 8443 and 9093 of the Security example) are
  replaced by free ones, in the commands and in the outputs.

The commands run with this tree's ``gateway`` first on ``PYTHONPATH``, with no directory that holds
a ``kafka-gateway`` on ``PATH`` (a command written as a bare ``kafka-gateway`` fails, as it does
after ``make`` on a fresh clone) and with no ``.curlrc`` or proxy settings of the machine's.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.gateway import GatewayProcess

from gateway.kafka.embedded import find_free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# make run's HTTP and broker ports, then the Security example's
README_PORTS = (8082, 9092, 8443, 9093)
# Hang guards, not performance checks: the README runs in about 10 s.
SCRIPT_DEADLINE = 60.0
STREAM_DEADLINE = 20.0

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->\s*$")
_OUTPUT_LINE = "# -> "
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass
class Command:
    text: str
    line: int  # where it starts in the README, 1-based
    expected: list[str] | None = None  # the lines it prints; None: not shown, not compared


@dataclass
class Block:
    info: str
    first: int  # the fence's line, 1-based
    last: int  # the closing fence's line
    lines: list[str]
    not_run: str | None = None
    commands: list[Command] = field(default_factory=list)


class ReadmeFormatError(ValueError):
    """The README breaks its own conventions (see the module docstring)."""


def _blocks(markdown: str) -> list[Block]:
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<!--") and "-->" not in line:  # a comment of several lines
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            i += 1
            continue
        m = _FENCE.match(line)
        if m is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not re.match(r"^```\s*$", lines[end]):
            end += 1
        if end == len(lines):
            raise ReadmeFormatError(f"line {i + 1}: the code block is never closed")
        not_run = _NOT_RUN.match(lines[i - 1]) if i > 0 else None
        if not_run is not None and m.group(1) != "sh":
            raise ReadmeFormatError(f"line {i + 1}: 'not run' before a block that is never run")
        blocks.append(
            Block(m.group(1), i + 1, end + 1, lines[i + 1:end], not_run and not_run.group(1))
        )
        i = end + 1
    return blocks


def _complete(text: str) -> bool:
    """Whether bash reads ``text`` as complete commands (not a line continued by ``\\``, ``|``,
    an open ``do ... done`` or quote)."""
    if text.endswith("\\"):
        return False
    checked = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return checked.returncode == 0 or "unexpected end of file" not in checked.stderr


def _commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    after_command = False  # whether a `# -> ` line here belongs to the last command
    i = 0
    while i < len(block.lines):
        line = block.lines[i]
        number = block.first + 1 + i
        stripped = line.strip()
        if line.startswith(_OUTPUT_LINE) or line.rstrip() == _OUTPUT_LINE.rstrip():
            if not after_command:
                raise ReadmeFormatError(f"line {number}: '# ->' does not follow a command")
            shown = line[len(_OUTPUT_LINE):]
            last = commands[-1]
            last.expected = [*(last.expected or []), shown]
            i += 1
            continue
        after_command = False
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        text = line
        i += 1
        while not _complete(text):
            if i == len(block.lines):
                raise ReadmeFormatError(f"line {number}: the command is not complete")
            text += "\n" + block.lines[i]
            i += 1
        commands.append(Command(text, number))
        after_command = True
    return commands


def extract(markdown: str) -> list[Command]:
    """The commands the README runs, in order, each with the output it shows (if any)."""
    blocks = _blocks(markdown)
    run: list[Command] = []
    for k, block in enumerate(blocks):
        if block.info != "sh" or block.not_run is not None:
            continue
        block.commands = _commands(block)
        if not block.commands:
            raise ReadmeFormatError(f"line {block.first}: a block to run has no command")
        following = blocks[k + 1] if k + 1 < len(blocks) else None
        between = markdown.splitlines()[block.last:following.first - 1] if following else []
        if following is not None and following.info == "" and not any(s.strip() for s in between):
            last = block.commands[-1]
            if last.expected is not None:
                raise ReadmeFormatError(
                    f"line {following.first}: an output block after '# ->' lines for line {last.line}"
                )
            last.expected = list(following.lines)
        if all(c.expected is None for c in block.commands):
            raise ReadmeFormatError(f"line {block.first}: a block that is run shows no output")
        run.extend(block.commands)
    return run


def _with_ports(text: str, ports: dict[int, int]) -> str:
    return re.sub(
        r"\b(127\.0\.0\.1|localhost):(\d+)\b",
        lambda m: f"{m[1]}:{ports.get(int(m[2]), int(m[2]))}",
        text,
    )


def _matches(shown: str, printed: str) -> bool:
    parts = _TIMESTAMP.split(shown)
    return re.fullmatch(_TIMESTAMP.pattern.join(re.escape(p) for p in parts), printed) is not None


def _run_args() -> list[str]:
    """``make run``'s arguments, read from the Makefile (the test starts what it starts)."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: build\n\t\$\(BIN\)/kafka-gateway \$\(RUN_ARGS\)$", makefile, re.M), (
        "make run no longer runs $(BIN)/kafka-gateway $(RUN_ARGS): update this test"
    )
    m = re.search(r"^RUN_ARGS \?= (.*)$", makefile, re.M)
    assert m is not None
    return shlex.split(m.group(1))


@dataclass
class UserShell:
    """What the README's commands run with: the scratch directory, environment and ports."""

    cwd: Path
    env: dict[str, str]
    ports: dict[int, int]
    gateway: GatewayProcess


def _user_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    path = [d for d in env.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "kafka-gateway").exists()]
    env["PATH"] = os.pathsep.join(path)
    env["PYTHONPATH"] = str(ROOT)  # this tree's gateway, whatever the editable install points at
    env["CURL_HOME"] = str(home)  # no .curlrc of the machine's
    return env


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[UserShell]:
    """A fresh gateway as ``make run`` starts it (embedded broker, ``--topic test:3``) on free
    ports, and a scratch directory with ``.venv`` for the commands."""
    venv = ROOT / ".venv"
    assert (venv / "bin" / "kafka-gateway").exists(), "no .venv/bin/kafka-gateway: run make first"
    cwd = tmp_path / "user"
    cwd.mkdir()
    (cwd / ".venv").symlink_to(venv)
    env = _user_env(cwd)
    broker_port = find_free_port()
    g = GatewayProcess(
        [*_run_args(), "--embedded-broker", f"127.0.0.1:{broker_port}"],
        tmp_path / "make-run.log",
        {"PYTHONPATH": str(ROOT)},
        command=[str(venv / "bin" / "kafka-gateway")],
    )
    ports = {README_PORTS[0]: g.port, README_PORTS[1]: broker_port}
    ports.update((p, find_free_port()) for p in README_PORTS[2:])
    try:
        yield UserShell(cwd, env, ports, g)
    finally:
        g.stop()
    g.assert_no_crash()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


_SAMPLE = """
<!-- not run: make itself -->
```sh
make run
```

```sh
echo one  # a comment
# -> one
# a comment line
for i in 1 2; do
  echo "$i"
done |
  cat
```

```
1
2
```

```toml
x = 1
```
"""


def test_extractor_follows_the_conventions_the_readme_states() -> None:
    assert [(c.line, c.text, c.expected) for c in extract(_SAMPLE)] == [
        (8, "echo one  # a comment", ["one"]),
        (11, 'for i in 1 2; do\n  echo "$i"\ndone |\n  cat', ["1", "2"]),
    ]
    with pytest.raises(ReadmeFormatError, match="line 1: a block that is run shows no output"):
        extract("```sh\necho one\n```\n")
    with pytest.raises(ReadmeFormatError, match="line 2: '# ->' does not follow a command"):
        extract("```sh\n# -> one\n```\n")
    with pytest.raises(ReadmeFormatError, match="line 3: the code block is never closed"):
        extract("text\n\n```sh\necho one\n")


def test_readme_calls_the_command_where_make_installs_it() -> None:
    """After ``make`` on a fresh clone, ``kafka-gateway`` is ``.venv/bin/kafka-gateway`` and not on
    ``PATH``: no command in the README, run here or not, calls it bare."""
    text = README.read_text()
    command = r"(?<![\w/.-])kafka-gateway(?![\w.:-])"
    bare = [
        line for block in _blocks(text) if block.info == "sh" for line in block.lines
        if re.search(command, line)
    ]
    bare += re.findall(rf"`{command} [^`]*`", text)  # inline, with arguments
    assert bare == []


def test_readme_examples_print_what_the_readme_shows(make_run: UserShell, tmp_path: Path) -> None:
    commands = extract(README.read_text())
    assert commands, "the README has no example to run"
    mark = f"README-TEST-{uuid.uuid4().hex}"
    script = []
    for n, c in enumerate(commands):
        script.append(_with_ports(c.text, make_run.ports))
        script.append(f"printf '\\n{mark} {n} %d\\n' \"$?\"")
    (tmp_path / "readme.sh").write_text("\n".join(script) + "\n")
    out_path, err_path = tmp_path / "readme.out", tmp_path / "readme.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            ["bash", str(tmp_path / "readme.sh")], cwd=make_run.cwd, env=make_run.env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )
        try:
            proc.wait(SCRIPT_DEADLINE)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill_group(proc)  # and the README's background gateway, should it still run
    printed = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    pieces = re.split(rf"\n{mark} (\d+) (\d+)\n", printed)
    outputs, statuses = pieces[0:-1:3], [int(s) for s in pieces[2::3]]
    if len(statuses) < len(commands):
        stuck = commands[len(statuses)]
        pytest.fail(
            f"README line {stuck.line} did not finish within {SCRIPT_DEADLINE:g} s:\n{stuck.text}\n"
            f"--- it printed:\n{pieces[-1]}\n--- stderr:\n{stderr[-3000:]}"
        )
    assert "Traceback" not in stderr, stderr[-5000:]

    failures = []
    for c, output, status in zip(commands, outputs, statuses, strict=True):
        lines = output.splitlines()
        if status != 0:
            failures.append(f"README line {c.line} exited with {status}:\n{c.text}\n{output}")
        elif c.expected is not None:
            shown = [_with_ports(s, make_run.ports) for s in c.expected]
            if len(lines) != len(shown) or not all(map(_matches, shown, lines)):
                failures.append(
                    f"README line {c.line} printed something else than the README shows:\n"
                    f"{c.text}\n--- shown:\n" + "\n".join(shown) + "\n--- printed:\n" + "\n".join(lines)
                )
    assert not failures, "\n\n".join(failures) + f"\n--- stderr:\n{stderr[-3000:]}"


def test_readme_pipe_example_prints_reports_while_its_input_is_open(make_run: UserShell) -> None:
    """The streaming example's curl prints reports while the loop feeding it still writes: here
    the loop's records go to curl as the loop prints them, except the last one, which is held
    back until curl has printed a report. A curl that reads all of its input before sending (as
    with ``--data-binary @-``) never prints one then, and the test fails."""
    pipes = [c for c in extract(README.read_text()) if re.search(r"\|\s*curl\b", c.text)]
    assert len(pipes) == 1, [c.text for c in pipes]
    text = _with_ports(pipes[0].text, make_run.ports)
    cut = list(re.finditer(r"\|\s*(?=curl\b)", text))[-1]
    loop, curl = text[:cut.start()], text[cut.end():]

    def shell(command: str, stdin: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["bash", "-c", command], cwd=make_run.cwd, env=make_run.env, stdin=stdin,
            stdout=subprocess.PIPE, start_new_session=True,
        )

    producer = shell(loop, subprocess.DEVNULL)
    client = shell(curl, subprocess.PIPE)
    assert producer.stdout is not None and client.stdin is not None and client.stdout is not None
    from_producer, to_client, from_client = producer.stdout, client.stdin, client.stdout
    printed: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [printed.put(line) for line in iter(from_client.readline, b"")], daemon=True
    )
    reader.start()
    records: list[bytes] = []
    try:
        for record in iter(from_producer.readline, b""):
            if records:  # the one before: it was not the last
                to_client.write(records[-1])
                to_client.flush()
            records.append(record)
        assert records, f"the loop printed nothing: {loop!r}"
        try:
            reports = [printed.get(timeout=STREAM_DEADLINE)]
        except queue.Empty:
            pytest.fail(
                f"curl printed no report in {STREAM_DEADLINE:g} s while its input was still "
                f"open: the README's pipe example does not stream ({curl!r})"
            )
        to_client.write(records[-1])
        to_client.close()
        assert client.wait(STREAM_DEADLINE) == 0
        reader.join(STREAM_DEADLINE)
        while not printed.empty():
            reports.append(printed.get_nowait())
    finally:
        for proc in (producer, client):
            _kill_group(proc)
        reader.join(STREAM_DEADLINE)
        for pipe in (from_producer, to_client, from_client):
            pipe.close()
    parsed = [json.loads(r) for r in reports]
    assert [r["error_code"] for r in parsed] == [200] * len(records)
    assert len({r["partition_id"] for r in parsed}) == 1  # one key
    assert [r["offset"] for r in parsed] == list(range(len(records)))  # a fresh `make run`
