"""The library's layers (docs/architecture.md, "Layers"): one SwiftPM target per folder of
Sources/Relay, each depending only on targets below it, and no file importing a module its
target does not declare (Swift would let a transitive module through)."""
import json
import os
import re
import subprocess

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Bottom to top. A target may depend only on targets earlier in this list.
LAYERS = [
    "CEpoll", "CTLS", "CRelaySIMD",
    "RelaySystem", "RelayReactor", "RelayCodecs", "RelayLog", "RelayTransport",
    "RelayCore", "RelayPush", "RelayACME", "Relaying", "RelayOperations",
]
# Layers that must not see the kernel module: the codecs and the core are pure.
PURE = {"RelayCodecs", "RelayCore"}


@pytest.fixture(scope="module")
def package():
    out = subprocess.run(["swift", "package", "dump-package"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def library_targets(package):
    """name → (path, [dependency names]) for every target under Sources/Relay."""
    targets = {}
    for t in package["targets"]:
        path = t.get("path") or ""
        if not path.startswith("Sources/Relay/"):
            continue
        deps = []
        for d in t["dependencies"]:
            kind, value = next(iter(d.items()))
            deps.append(value[0])
        targets[t["name"]] = (path, deps)
    return targets


def test_every_folder_of_sources_relay_is_one_layer_target(package):
    targets = library_targets(package)
    folders = sorted(d for d in os.listdir(os.path.join(REPO_ROOT, "Sources", "Relay"))
                     if os.path.isdir(os.path.join(REPO_ROOT, "Sources", "Relay", d)))
    assert sorted(p.split("/")[2] for p, _ in targets.values()) == folders
    assert set(targets) <= set(LAYERS), set(targets) - set(LAYERS)
    # No loose source file beside the folders: everything belongs to a layer.
    loose = [f for f in os.listdir(os.path.join(REPO_ROOT, "Sources", "Relay"))
             if os.path.isfile(os.path.join(REPO_ROOT, "Sources", "Relay", f))]
    assert loose == []


def test_dependencies_point_only_downward(package):
    for name, (_, deps) in library_targets(package).items():
        for d in deps:
            assert LAYERS.index(d) < LAYERS.index(name), f"{name} depends on {d}, which is not below it"


def test_files_import_only_what_their_target_declares(package):
    for name, (path, deps) in library_targets(package).items():
        allowed = set(deps) | {"Glibc"}
        if name in PURE:
            assert "CEpoll" not in deps, f"{name} is pure and must not depend on the kernel module"
        for root, _, files in os.walk(os.path.join(REPO_ROOT, path)):
            for f in files:
                if not f.endswith(".swift"):
                    continue
                src = open(os.path.join(root, f)).read()
                for m in re.findall(r"^(?:@\w+ )?(?:\w+ )?import (\w+)", src, re.M):
                    assert m in allowed, f"{os.path.join(root, f)} imports {m}, not a dependency of {name}"
