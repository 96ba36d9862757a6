#!/usr/bin/env python3
"""Markdown summary of relay-bench JSON lines (scripts/bench.sh): relay beside floor, per scenario."""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {}
for r in rows:
    key = (r["scenario"], r.get("pairs"))
    by.setdefault(key, {})[r["target_kind"]] = r

def med(r, k):
    v = r.get(k) if r else None
    return v.get("median") if isinstance(v, dict) else v

def fmt(v, d=0):
    return "—" if v is None else f"{v:,.{d}f}"

print("| scenario | figure | relay | floor | relay / floor | date |")
print("|---|---|---|---|---|---|")
for (s, pairs), t in by.items():
    rl, fl = t.get("relay"), t.get("floor")
    date = (rl or fl)["date"][:10]
    def line(fig, k, d=0, ratio=True):
        a, b = med(rl, k), med(fl, k)
        q = f"{a / b * 100:.1f}%" if ratio and a is not None and b else "—"
        print(f"| {s} | {fig} | {fmt(a, d)} | {fmt(b, d)} | {q} | {date} |")
    if s == "M1":
        line(f"RSS B / idle connection ({pairs} pairs)", "rss_bytes_per_connection", 0, ratio=False)
    elif s == "L1":
        for side, r in (("relay", rl), ("floor", fl)):
            if not r: continue
            for lv in r.get("latency_us_by_load", []):
                print(f"| L1 | {side} {lv['load_pct']:.0f}% load p50 / p99 / p99.9 µs | "
                      f"{lv['p50']:.1f} / {lv['p99']:.1f} / {lv['p99_9']:.1f} | | | {date} |")
    elif s == "S8":
        print(f"| S8 | lost / RSS max kB | {rl.get('lost')} / {rl.get('rss_kb_max')} (base {rl.get('rss_kb_before')}) | — | — | {date} |")
    elif s == "S5":
        line("msgs/s, 100 active", "active_only_msgs_per_s")
        line("msgs/s, + idle pairs", "with_idle_msgs_per_s")
        print(f"| S5 | rate drop | {rl.get('rate_drop_pct', 0):.1f}% | | | {date} |")
    else:
        line("msgs/s", "msgs_per_s")
        line("MB/s", "mb_per_s", 1)
        line("target µs CPU / msg", "target_cpu_us_per_msg", 3)
        line("generator CPU %", "generator_cpu_pct", 0, ratio=False)
