"""Count Autobahn|Testsuite fuzzingclient results.

Usage: python3 tests/autobahn/count.py [reports/servers/index.json]

index.json is {agent: {case_id: {"behavior", "behaviorClose", ...}}}. wstest itself exits 0
even when cases fail, so this is the verdict:
  - a case passes when behavior and behaviorClose are both OK / NON-STRICT / INFORMATIONAL;
  - behavior UNIMPLEMENTED (an extension the server does not offer) counts as skipped;
  - anything else fails and is listed with both behaviors.
The last line is exactly "autobahn: N passed, N failed" (", N skipped" appended when N > 0).
Exit status is 1 when any case failed or no case ran, else 0.
"""
import json
import sys

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case_id):
    # "9.10.2" sorts after "9.2.1": compare numerically, part by part.
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def main(argv):
    path = argv[1] if len(argv) > 1 else "reports/servers/index.json"
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("autobahn: cannot read %s: %s" % (path, e))
        print("autobahn: 0 passed, 0 failed")
        return 1

    passed = failed = skipped = 0
    for agent in sorted(index):
        cases = index[agent]
        for case_id in sorted(cases, key=case_key):
            r = cases[case_id]
            behavior = r.get("behavior")
            close = r.get("behaviorClose")
            if behavior == "UNIMPLEMENTED":
                skipped += 1
            elif behavior in PASSING and close in PASSING:
                passed += 1
            else:
                failed += 1
                print("FAIL %s %s: behavior=%s behaviorClose=%s remoteCloseCode=%s report=%s" % (
                    agent, case_id, behavior, close, r.get("remoteCloseCode"),
                    r.get("reportfile")))

    line = "autobahn: %d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 1 if failed or passed + failed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
