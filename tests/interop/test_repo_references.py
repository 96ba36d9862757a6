"""The repository stands on its own: no document, source comment, test or `--help` text points at
files that are not in it (the team's private spec and design notes). References go to
docs/protocol.md, docs/operations.md, docs/architecture.md or an RFC instead."""

import os
import re
import subprocess

from conftest import REPO_ROOT

# "SPEC §9.3", "SPEC.md", "DESIGN.md", "BENCH.md", "../shared/": each names a file outside the repo.
# A name in quotes is a guard like this one (a word list checked against --help), not a reference.
FOREIGN = re.compile(r"\bSPEC(?:\.md)?\s*§|(?<!\")(?:\bSPEC\.md|\bDESIGN\.md|\bBENCH\.md)\b|\.\./shared/")


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and p != "tests/interop/test_repo_references.py"]


def test_no_file_cites_documents_outside_the_repo():
    hits = []
    for rel in tracked_files():
        path = os.path.join(REPO_ROOT, rel)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if FOREIGN.search(line):
                hits.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits)


def test_help_texts_cite_only_the_repo(relay_bin):
    bench = os.path.join(os.path.dirname(relay_bin), "relay-bench")
    for binary in (relay_bin, bench):
        r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
        text = r.stdout + r.stderr
        assert text.strip(), f"{binary} --help printed nothing"
        assert not FOREIGN.search(text), f"{binary} --help cites a file outside the repo"
