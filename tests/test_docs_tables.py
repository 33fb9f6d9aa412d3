"""Every results table the docs re-derive from committed records is the output of its documented command.

The README and docs/ give, for each results table, the command that prints it from the records under
docs/results/ (``python -m common.report docs/results/...``, ``gan.report``, ``gan.table6``,
``experiments/gradient_scale.py --show``, ``experiments/profile_step.py --show``). This test finds those
commands in the markdown (fenced blocks and inline code), runs each on the committed records, and checks that
every table row it prints appears verbatim in the file that quotes it: a record changed without its table, or
a table edited by hand, fails here.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys

import pytest

from manifold_mixup.common import report
from manifold_mixup.gan import report as gan_report
from manifold_mixup.gan import table6

from conftest import ROOT

spec = importlib.util.spec_from_file_location("gradient_scale_docs", ROOT / "experiments" / "gradient_scale.py")
gradient_scale = importlib.util.module_from_spec(spec)
sys.modules["gradient_scale_docs"] = gradient_scale
spec.loader.exec_module(gradient_scale)
spec = importlib.util.spec_from_file_location("profile_step_docs", ROOT / "experiments" / "profile_step.py")
profile_step = importlib.util.module_from_spec(spec)
sys.modules["profile_step_docs"] = profile_step
spec.loader.exec_module(profile_step)

COMMANDS = {
    "python -m common.report": report.main,
    "python -m gan.report": gan_report.main,
    "python -m gan.table6": table6.main,
    "python experiments/gradient_scale.py": gradient_scale.main,
    "python experiments/profile_step.py": profile_step.main,
}
PATTERN = re.compile(
    r"(python (?:-m (?:common\.report|gan\.report|gan\.table6)|experiments/(?:gradient_scale|profile_step)\.py)) (.*)"
)
DOCS = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")])


def documented_commands(text: str) -> list[tuple[str, str]]:
    """(program, arguments) of each command that reads docs/results, from code blocks (continuation lines
    joined, comments cut) and inline code spans; commands that write (--archive, --json, --samples) left out."""
    candidates = []
    for block in re.findall(r"```[\w-]*\n(.*?)```", text, re.S):
        candidates += [line.split(" #")[0] for line in block.replace("\\\n", " ").splitlines()]
    inline = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    candidates += [span.replace("\n", " ") for span in inline]
    found = []
    for line in candidates:
        for match in PATTERN.finditer(line):
            program, args = match.group(1), re.split(r"\s*[;&|]", match.group(2))[0].strip()
            if "docs/results" in args and not re.search(r"--(archive|json|samples|out)\b", args):
                found.append((program, args))
    return found


def cases() -> list[tuple[str, str, str]]:
    return [
        (str(doc.relative_to(ROOT)), program, args)
        for doc in DOCS
        for program, args in dict.fromkeys(documented_commands(doc.read_text()))
    ]


def expand(args: str) -> list[str]:
    """The arguments as bash gives them to the command (braces and globs expanded, from the repository root)."""
    out = subprocess.run(["bash", "-c", f"printf '%s\\n' {args}"], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_the_docs_name_the_commands_of_their_tables():
    found = {(doc, program) for doc, program, _ in cases()}
    for doc, program in [
        ("docs/lowlabel.md", "python -m common.report"),
        ("docs/ssl.md", "python -m common.report"),
        ("docs/ssl.md", "python experiments/gradient_scale.py"),
        ("docs/supervised.md", "python -m common.report"),
        ("docs/gan.md", "python -m gan.report"),
        ("docs/gan.md", "python -m gan.table6"),
        ("BENCHMARKS.md", "python experiments/profile_step.py"),
    ]:
        assert (doc, program) in found, f"{doc} no longer names a {program} command over docs/results"


@pytest.mark.parametrize("doc, program, args", cases(), ids=lambda v: str(v)[:60])
def test_each_documented_table_is_its_commands_output(doc, program, args, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = expand(args)
    missing_records = [a for a in argv if a.startswith("docs/") and not (ROOT / a).exists()]
    assert not missing_records, f"{doc}: `{program} {args}` names records that do not exist: {missing_records}"
    capsys.readouterr()
    COMMANDS[program](argv)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows, f"{doc}: `{program} {shlex.join(argv)[:80]}` printed no table"
    quoting = set((ROOT / doc).read_text().splitlines())
    # a doc that shows the table (its header row) shows all of it; one that only cites the command (a
    # departures row, the README's summary) needs the table shown verbatim in some other page
    lines = quoting if rows[0] in quoting else {line for d in DOCS for line in d.read_text().splitlines()}
    missing = [row for row in rows if row not in lines]
    where = doc if rows[0] in quoting else f"any page (cited in {doc})"
    assert not missing, f"{where} does not show these rows of `{program} {args}`:\n" + "\n".join(missing[:5])
