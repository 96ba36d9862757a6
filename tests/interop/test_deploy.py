"""deploy/: the systemd units pass `systemd-analyze verify` and carry the hardening docs/operations.md
asks for; deploy/install.sh plans without writing (--dry-run) and installs idempotently under
--root. No systemd needs to be running: verify works offline on unit files.
"""
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess

import pytest

from conftest import REPO_ROOT

DEPLOY = pathlib.Path(REPO_ROOT) / "deploy"
SERVICE = DEPLOY / "pyrycode-relay.service"
SOCKET = DEPLOY / "pyrycode-relay.socket"
INSTALL = DEPLOY / "install.sh"


def unit_settings(path):
    """[Section] Key=Value pairs (continuation lines joined), as a list of (section, key, value)."""
    out, section, pending = [], None, ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(path, section, key):
    return [v for s, k, v in unit_settings(path) if s == section and k == key]


def verify(tmp_path, relay_bin, *units, rewrite=None):
    """Copies units to tmp_path with ExecStart pointing at the built binary; runs verify."""
    names = []
    for u in units:
        text = u.read_text().replace("/usr/local/bin/pyrycode-relay", relay_bin)
        if rewrite:
            text = rewrite(text)
        (tmp_path / u.name).write_text(text)
        names.append("./" + u.name)
    return subprocess.run(["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}, timeout=60)


@pytest.fixture
def analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")


def test_units_verify_cleanly(analyze, tmp_path, relay_bin):
    r = verify(tmp_path, relay_bin, SERVICE, SOCKET)
    # verify reports parse problems ("…, ignoring") as warnings with exit 0: any output fails.
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_verify_catches_what_we_rely_on_it_for(analyze, tmp_path, relay_bin):
    """Controls: a misspelt value and a missing binary are reported (else the test above is empty)."""
    bad = verify(tmp_path, relay_bin, SERVICE, rewrite=lambda t: t.replace("Type=notify", "Type=notfy"))
    assert "Failed to parse service type" in bad.stderr
    missing = verify(tmp_path, "/nonexistent/pyrycode-relay", SERVICE)
    assert missing.returncode != 0 and "not executable" in missing.stderr


def test_service_hardening_and_contract():
    one = lambda key: values(SERVICE, "Service", key)
    assert one("Type") == ["notify"]
    assert one("WatchdogSec") and one("WatchdogSec")[0] not in ("0", "infinity")
    assert one("Restart") == ["on-failure"]
    assert one("RestartPreventExitStatus") == ["2"]  # exit 2 = refused config: restarting cannot help
    assert one("DynamicUser") == ["yes"]
    assert one("AmbientCapabilities") == ["CAP_NET_BIND_SERVICE"]
    assert one("CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one(key) == ["yes"], key
    assert one("ProtectSystem") == ["strict"]
    assert one("RuntimeDirectory") == ["pyrycode-relay"]
    assert one("StateDirectory") == ["pyrycode-relay"]
    assert int(one("LimitNOFILE")[0]) >= 10_000 + 1_024 + 64  # --max-connections + --max-half-open + headroom
    assert one("EnvironmentFile") == ["/etc/pyrycode-relay/pyrycode-relay.env"]
    assert one("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    exec_start = one("ExecStart")[0]
    assert exec_start.startswith("/usr/local/bin/pyrycode-relay ")
    assert "--insecure-listen" not in exec_start  # refused in production mode (docs/operations.md)
    assert "--metrics-listen 127.0.0.1:9090" in exec_start
    assert exec_start.endswith("$RELAY_ARGS")


def seconds(text):
    """A systemd time span of the forms the units use: 60, 60s, 2min, 1min 30s."""
    total, units = 0.0, {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


def test_a_start_that_keeps_failing_ends_in_failed():
    """Missing TLS files exit 1 at once; Restart=on-failure alone would retry every RestartSec for
    ever. The start limit must be reachable by those restarts: Burst starts spaced RestartSec
    apart fit inside IntervalSec. It belongs in [Unit] (systemd.unit(5); [Service] is the old place)."""
    interval = values(SERVICE, "Unit", "StartLimitIntervalSec")
    burst = values(SERVICE, "Unit", "StartLimitBurst")
    assert len(interval) == 1 and len(burst) == 1, (interval, burst)
    restart = seconds(values(SERVICE, "Service", "RestartSec")[0])
    assert restart > 0 and seconds(interval[0]) > 0
    assert int(burst[0]) * restart < seconds(interval[0]), (burst, restart, interval)
    assert not [k for s, k, _ in unit_settings(SERVICE) if s == "Service" and k.startswith("StartLimit")]


def test_watchdog_comment_matches_the_ping_schedule():
    """The loop pings at min(1 s status tick, WatchdogSec/2) (Operations/SystemdNotify.swift)."""
    text = SERVICE.read_text()
    assert "WATCHDOG=1 every second (every WatchdogSec/2 if that is shorter)" in text
    assert seconds(values(SERVICE, "Service", "WatchdogSec")[0]) >= 2  # ≥ 2 pings per period


def test_env_example_sets_production_and_the_single_instance_assertion():
    lines = [l for l in (DEPLOY / "pyrycode-relay.env.example").read_text().splitlines()
             if l and not l.startswith("#")]
    assert "PYRYCODE_RELAY_PRODUCTION=1" in lines
    assert "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true" in lines
    assert not any(l.startswith("PYRYCODE_RELAY_SINGLE_INSTANCE=") for l in lines)  # never the bypass


def test_socket_unit_is_public_listener_only():
    assert values(SOCKET, "Socket", "ListenStream") == ["443"]
    assert values(SOCKET, "Socket", "Accept") == ["no"]


# -- install.sh ----------------------------------------------------------------------------

def snapshot(root):
    """{relative path: (mode, content or None for directories, symlink target)} of a tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = (oct(st.st_mode & 0o7777), None)
            else:
                out[rel] = (oct(st.st_mode & 0o7777), p.read_bytes())
    return out


def install(*args):
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)


def test_install_dry_run_writes_nothing(tmp_path, relay_bin):
    root = tmp_path / "root"
    root.mkdir()
    r = install("--dry-run", "--root", str(root), "--binary", relay_bin, "--domain", "relay.test.example", "--socket")
    assert r.returncode == 0, r.stderr
    assert snapshot(root) == {}
    for planned in ("/usr/local/bin/pyrycode-relay", "/etc/systemd/system/pyrycode-relay.service",
                    "/etc/systemd/system/pyrycode-relay.socket", "/etc/pyrycode-relay/pyrycode-relay.env",
                    "/var/lib/pyrycode-relay/tls/", "/etc/letsencrypt/renewal-hooks/deploy/pyrycode-relay"):
        assert any(l.startswith("would ") and planned in l for l in r.stdout.splitlines()), (planned, r.stdout)


def test_install_creates_the_tree_idempotently(tmp_path, relay_bin):
    root = tmp_path / "root"
    root.mkdir()
    args = ("--root", str(root), "--binary", relay_bin, "--domain", "relay.test.example", "--socket")
    first = install(*args)
    assert first.returncode == 0, first.stderr
    tree = snapshot(root)
    expect = {
        "usr/local/bin/pyrycode-relay": "0o755",
        "etc/systemd/system/pyrycode-relay.service": "0o644",
        "etc/systemd/system/pyrycode-relay.socket": "0o644",
        "etc/pyrycode-relay/pyrycode-relay.env": "0o640",
        "var/lib/pyrycode-relay": "0o700",
        "var/lib/pyrycode-relay/tls": "0o700",
        "etc/letsencrypt/renewal-hooks/deploy/pyrycode-relay": "0o755",
        "usr/local/share/doc/pyrycode-relay/operations.md": "0o644",
        "usr/local/share/doc/pyrycode-relay/architecture.md": "0o644",
    }
    for rel, mode in expect.items():
        assert rel in tree and tree[rel][0] == mode, (rel, tree.get(rel))
    assert tree["usr/local/bin/pyrycode-relay"][1] == pathlib.Path(relay_bin).read_bytes()
    assert tree["etc/systemd/system/pyrycode-relay.service"][1] == SERVICE.read_bytes()
    env = tree["etc/pyrycode-relay/pyrycode-relay.env"][1].decode()
    assert "RELAY_ARGS=--domain relay.test.example" in env.splitlines()
    hook = tree["etc/letsencrypt/renewal-hooks/deploy/pyrycode-relay"][1].decode()
    assert "DOMAIN=relay.test.example" in hook.splitlines()

    second = install(*args)
    assert second.returncode == 0, second.stderr
    assert snapshot(root) == tree
    assert not any(l.startswith(("install", "update", "create", "mkdir", "chmod")) for l in second.stdout.splitlines()), second.stdout

    # The operator's env file is theirs: a re-run keeps their edit; a changed unit is updated.
    env_path = root / "etc/pyrycode-relay/pyrycode-relay.env"
    env_path.write_text(env + "RELAY_ARGS=--domain other.example\n")
    (root / "etc/systemd/system/pyrycode-relay.service").write_text("stale\n")
    third = install(*args)
    assert third.returncode == 0, third.stderr
    assert env_path.read_text().endswith("RELAY_ARGS=--domain other.example\n")
    assert (root / "etc/systemd/system/pyrycode-relay.service").read_bytes() == SERVICE.read_bytes()
    assert "update     /etc/systemd/system/pyrycode-relay.service (0644)" in third.stdout


def test_install_refuses_bad_usage(tmp_path):
    assert install("--bogus").returncode == 2
    assert install("--root", str(tmp_path / "missing")).returncode == 2
    assert install("--root", str(tmp_path), "--domain", "bad name;rm").returncode == 2
    assert install("--root", str(tmp_path), "--binary", str(tmp_path / "nope")).returncode == 2
    assert os.listdir(tmp_path) == []


def test_install_puts_the_architecture_doc_where_the_refusal_points(tmp_path, relay_bin):
    """The single-instance refusal names a file an operator can open on the VM."""
    root = tmp_path / "root"
    root.mkdir()
    assert install("--root", str(root)).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRYCODE_RELAY_")}
    env["PYRYCODE_RELAY_PRODUCTION"] = "1"  # without the assertion: refused at the check
    r = subprocess.run([relay_bin, "--insecure-listen", "127.0.0.1:1", "--metrics-listen", "",
                        "--runtime-dir", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=15)
    assert r.returncode == 2, r.stderr
    see = [l for l in r.stderr.splitlines() if l.startswith("  see: ")]
    assert len(see) == 1, r.stderr
    path = see[0].split()[1]
    assert path.endswith("/architecture.md") and os.path.isabs(path), see
    installed = root / path.lstrip("/")
    assert installed.read_bytes() == (pathlib.Path(REPO_ROOT) / "docs" / "architecture.md").read_bytes()
    assert 'v1 = single-instance' in installed.read_text()


def test_install_says_to_stop_the_service_before_enabling_the_socket(tmp_path):
    """`systemctl enable --now pyrycode-relay.socket` fails while the service holds :443."""
    r = install("--dry-run", "--root", str(tmp_path), "--socket")
    assert r.returncode == 0, r.stderr
    steps = [l.strip() for l in r.stdout.splitlines() if re.match(r"^  \d\. ", l)]
    stop = next(i for i, l in enumerate(steps) if "systemctl stop pyrycode-relay.service" in l)
    enable = next(i for i, l in enumerate(steps) if "systemctl enable --now pyrycode-relay.socket" in l)
    assert stop < enable, steps


def test_operations_doc_matches_what_systemd_shows():
    """docs/operations.md: the watchdog kill as systemd reports it without a core-dump handler,
    how to get cores on stock Debian, the ping schedule, the start limit, and the socket order."""
    doc = (pathlib.Path(REPO_ROOT) / "docs" / "operations.md").read_text()
    assert "code=killed, status=6/ABRT" in doc
    assert "apt-get install systemd-coredump" in doc and "coredumpctl list pyrycode-relay" in doc
    assert "every 15 s" not in doc  # the ping is the 1 s loop tick, not WatchdogSec/2 of 30 s
    assert "`WATCHDOG=1` every second (every `WatchdogSec/2` if that is shorter)" in doc
    assert "systemctl reset-failed pyrycode-relay" in doc and "start-limit-hit" in doc
    socket_section = doc.split("### Socket activation", 1)[1].split("\n## ", 1)[0]
    commands = [l.strip() for l in socket_section.splitlines() if l.startswith("    systemctl ")]
    stop = commands.index("systemctl stop pyrycode-relay.service")
    assert stop < commands.index("systemctl enable --now pyrycode-relay.socket"), commands


def push_dropin():
    """The [Service] drop-in of docs/operations.md § Push (FCM), exactly as an operator copies it."""
    text = (pathlib.Path(REPO_ROOT) / "docs" / "operations.md").read_text()
    return text.split("## Push (FCM)", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]


def test_push_dropin_verifies_and_hands_the_key_over_by_environment(analyze, tmp_path, relay_bin):
    dropin = push_dropin()
    assert "LoadCredential=fcm-key:/etc/pyrycode-relay/fcm-key.json" in dropin.splitlines()
    exec_line = next(l for l in dropin.splitlines() if l.startswith("ExecStart=/bin/sh -c '"))
    script = exec_line[len("ExecStart=/bin/sh -c '"):-1]
    # The wrapped command is the unit's own ExecStart (same flags, $RELAY_ARGS last), after
    # systemd turns `$$` into `$`.
    unit_cmd = " ".join(values(SERVICE, "Service", "ExecStart")[0].split())
    assert script.replace("$$", "$").endswith("exec " + unit_cmd)
    r = verify(tmp_path, relay_bin, SERVICE,
               rewrite=lambda t: t + "\n[Service]\n" + dropin.split("[Service]\n", 1)[1].replace(
                   "/usr/local/bin/pyrycode-relay", relay_bin))
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr

    # Run the shell part as systemd would (`$$` → `$`, %S → the state directory) with a stand-in
    # binary that records what it received: the key arrives whole in the variable, never in argv.
    key = json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nsecret-material\n"},
                     indent=2)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "fcm-key").write_text(key + "\n")
    standin = tmp_path / "standin.sh"
    standin.write_text('#!/bin/sh\nprintf "%s" "$PYRYCODE_RELAY_FCM_CREDENTIALS" > "$OUT/env"\n'
                       'printf "%s\\n" "$@" > "$OUT/argv"\n')
    standin.chmod(0o755)
    cmd = script.replace("$$", "$").replace("%S", "/var/lib").replace("/usr/local/bin/pyrycode-relay", str(standin))
    subprocess.run(["/bin/sh", "-c", cmd], check=True, timeout=10,
                   env={"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": str(creds), "OUT": str(tmp_path),
                        "RELAY_ARGS": "--domain relay.example.com --drain-deadline 10s"})
    assert (tmp_path / "env").read_text() == key
    argv = (tmp_path / "argv").read_text().split("\n")[:-1]
    assert argv[-4:] == ["--domain", "relay.example.com", "--drain-deadline", "10s"]
    assert "--tls-cert" in argv and not any("secret-material" in a or "{" in a for a in argv)
