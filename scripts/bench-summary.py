#!/usr/bin/env python3
"""Markdown summary of relay-bench JSON lines (scripts/bench.sh): every docs/benchmarks.md figure, the
relay beside the floor (or beside plain / openssl speed where that is the yardstick), the
target and whether it is met."""
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]

def tls(r):
    return r.get("target", "").startswith("wss://")

def find(scen, kind=None, label=None, pairs=None, secure=False):
    """The last line matching (later runs of the same figure win)."""
    hit = None
    for r in rows:
        if r.get("scenario") != scen: continue
        if kind and r.get("target_kind") != kind: continue
        if label is not None and r.get("label") != label: continue
        if pairs is not None and r.get("pairs") != pairs: continue
        if r.get("tool") == "relay-bench" and tls(r) != secure: continue
        hit = r
    return hit

def med(r, k):
    v = r.get(k) if r else None
    return v.get("median") if isinstance(v, dict) else v

def fmt(v, d=0):
    return "—" if v is None else f"{v:,.{d}f}"

def verdict(ok, gap=""):
    if ok is None: return "n/a"
    return "yes" if ok else f"**no**{(' (' + gap + ')') if gap else ''}"

dates = sorted(r["date"][:10] for r in rows if r.get("date"))
print(f"| figure | relay | yardstick | relay / yardstick | target | met? |")
print("|---|---|---|---|---|---|")

def row(fig, a, b, ratio_txt, target, ok, gap=""):
    print(f"| {fig} | {a} | {b} | {ratio_txt} | {target} | {verdict(ok, gap)} |")

def pct_row(fig, key, scen, target_pct, d=0, label="make-bench"):
    rl, fl = find(scen, "relay", label), find(scen, "floor", label)
    a, b = med(rl, key), med(fl, key)
    if a is None: return
    q = a / b * 100 if b else None
    ok = None if q is None else q >= target_pct
    row(fig, fmt(a, d), f"floor {fmt(b, d)}", "—" if q is None else f"{q:.1f}%", f"≥ {target_pct}% of floor",
        ok, "" if ok or q is None else f"−{target_pct - q:.1f} points")

def cpu_row(fig, scen, label="make-bench"):
    rl, fl = find(scen, "relay", label), find(scen, "floor", label)
    a, b = med(rl, "target_cpu_us_per_msg"), med(fl, "target_cpu_us_per_msg")
    if a is None or not b: return
    q = a / b
    row(fig, f"{a:.3f} µs", f"floor {b:.3f} µs", f"{q:.2f}×", "≤ 1.09× floor", q <= 1.09, "" if q <= 1.09 else f"+{(q - 1.09) * 100:.0f} points")

pct_row("S1 msgs/s (100 pairs, 64 B, window 1)", "msgs_per_s", "S1", 92)
cpu_row("S1 relay CPU / msg", "S1")
pct_row("S1b msgs/s (window 16)", "msgs_per_s", "S1b", 75)
pct_row("S2 msgs/s (1 KiB)", "msgs_per_s", "S2", 92)
cpu_row("S2 relay CPU / msg", "S2")
pct_row("S2b msgs/s (1 KiB, window 16)", "msgs_per_s", "S2b", 75)
pct_row("S3 MB/s (64 KiB)", "mb_per_s", "S3", 85)

s4, s1 = find("S4", "relay"), find("S1", "relay", "make-bench")
if s4 and s1:
    a, b = med(s4, "msgs_per_s"), med(s1, "msgs_per_s")
    row("S4 fan-in msgs/s (60 binaries × 16 phones, echo)", fmt(a), f"S1 {fmt(b)}", f"{a / b:.2f}×", "≥ 1.5× S1", a / b >= 1.5)

s5 = find("S5", "relay")
if s5:
    d = s5.get("rate_drop_pct")
    row(f"S5 S1 rate with {s5.get('idle_pairs', 9000):,} idle pairs", fmt(med(s5, "with_idle_msgs_per_s")),
        f"alone {fmt(med(s5, 'active_only_msgs_per_s'))}", f"drop {d:.1f}%", "drop ≤ 5%", d <= 5, f"{d - 5:.1f} points over")

for scen, key, unit, d in (("S1", "msgs_per_s", "msgs/s", 0), ("S3", "mb_per_s", "MB/s", 0)):
    t, p = find(scen, "relay", "S6", secure=True), find(scen, "relay", "S6")
    a, b = med(t, key), med(p, key)
    if a is None or not b: continue
    q = a / b * 100
    if scen == "S1":
        row("S6 TLS S1 msgs/s (64 B)", fmt(a), f"plain {fmt(b)}", f"{q:.1f}%", "≥ 60% of plain", q >= 60, f"−{60 - q:.1f} points")
    else:
        row("S6 TLS S3 MB/s (64 KiB)", fmt(a), f"plain {fmt(b)}", f"{q:.1f}%", "≥ 850 MB/s", a >= 850, f"−{850 - a:.0f} MB/s")
        ct, cp = med(t, "target_cpu_pct"), med(p, "target_cpu_pct")
        if ct and cp:
            x, y = a / ct * 100, b / cp * 100
            row("S6 S3 MB/s per busy relay core (MB/s ÷ relay CPU share)", fmt(x), f"plain {fmt(y)}", f"{x / y * 100:.1f}%", "—", None)

sp = find("S7", "openssl")
s7p, s7f = find("S7", "relay", "make-bench"), find("S7", "floor", "make-bench")
s7t = find("S7", "relay", "make-bench", secure=True)
if s7p:
    a, b = med(s7p, "upgrades_msgs_per_s"), med(s7f, "upgrades_msgs_per_s")
    row("S7 plain upgrades/s (64 in flight)", fmt(a), f"floor {fmt(b)}", f"{a / b * 100:.1f}%" if b else "—", "—", None)
    a, b = med(s7p, "upgrades_per_core_per_s"), med(s7f, "upgrades_per_core_per_s")
    row("S7 plain upgrades / s per relay core", fmt(a), f"floor {fmt(b)}", f"{a / b * 100:.1f}%" if b else "—", "—", None)
if s7t:
    hs = sp.get("handshakes_per_s") if sp else None
    a = med(s7t, "full_per_core_per_s")
    if a is not None:
        q = a / hs * 100 if hs else None
        # `openssl speed` prices the primitives only (2 X25519 + 1 ECDSA sign): context, not a target.
        row("S7 TLS full handshakes / s per relay core", fmt(a),
            f"openssl speed {fmt(hs)} (X25519 {fmt(sp and sp.get('x25519_ops_per_s'))}, ECDSA sign {fmt(sp and sp.get('ecdsap256_sign_per_s'))})",
            "—" if q is None else f"{q:.1f}%", "— (nginx below is the yardstick)", None)
# scripts/tls-handshake-bench.sh: relay and nginx runs interleaved, paired in order. Labelled
# `@healthz` when both answered `GET /healthz` (the handshakes alike: the target's reading); without
# it the relay answered its WebSocket upgrade (what a connection costs it in all).
for suffix, what, judged in (("@healthz", "both answering GET /healthz", True),
                             ("", "the relay answering its WebSocket upgrade", False)):
    s7r = [r for r in rows if r.get("label") == "tls-handshake-relay" + suffix]
    s7n = [r for r in rows if r.get("label") == "tls-handshake-nginx" + suffix]
    rc, nc = [med(r, "full_target_cpu_us_per_msg") for r in s7r], [med(r, "full_target_cpu_us_per_msg") for r in s7n]
    ratios = sorted(a / b for a, b in zip(rc, nc) if a and b)
    if ratios:
        q, a, b = statistics.median(ratios), statistics.median(rc), statistics.median(nc)
        row(f"S7 TLS server CPU µs per full handshake, {what} ({len(ratios)} runs each, interleaved)", fmt(a, 1),
            f"nginx {fmt(b, 1)}", f"{q:.3f}× (runs {ratios[0]:.3f}–{ratios[-1]:.3f})",
            "≤ 1.000× nginx" if judged else "—", (q <= 1) if judged else None, f"+{(q - 1) * 100:.1f}%")
        if judged:
            row("S7 TLS full handshakes / s per server core", fmt(1e6 / a), f"nginx {fmt(1e6 / b)}", f"{b / a * 100:.1f}%", "≥ nginx", None)
if s7t:
    row("S7 TLS full handshakes/s (wall, generator-bound)", fmt(med(s7t, "full_msgs_per_s")), "—", "—", "—", None)
    a = med(s7t, "resumed_per_core_per_s")
    row("S7 TLS relay CPU µs per full handshake", fmt(med(s7t, "full_target_cpu_us_per_msg"), 1),
        f"plain upgrade {fmt(med(s7p, 'upgrades_target_cpu_us_per_msg'), 1) if s7p else '—'}; crypto {fmt(1e6 / hs, 1) if hs else '—'}",
        "—", "—", None)
    row(f"S7 TLS resumptions / s per relay core ({(s7t.get('resumed_resumed_fraction') or 0) * 100:.0f}% resumed)",
        fmt(a), "—", "—", "—", None)

s8 = find("S8", "relay")
if s8:
    row("S8 slow binary: lost / relay RSS base → max", f"{s8.get('lost')} / {fmt(s8.get('rss_kb_before'))} → {fmt(s8.get('rss_kb_max'))} kB",
        "—", "—", "bounded, none lost", s8.get("lost") == 0)

# L1: every run of the session counts (scripts/bench.sh alternates floor and relay L1_RUNS
# times); per load level the median over runs of each percentile, relay beside floor.
def l1_runs(kind):
    return [r for r in rows if r.get("scenario") == "L1" and r.get("target_kind") == kind and not tls(r)]

def l1_levels(kind):
    levels = {}
    for r in l1_runs(kind):
        for lv in r.get("latency_us_by_load") or []:
            levels.setdefault(round(lv["load_pct"]), []).append(lv)
    return levels

def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

l1r, l1f = l1_levels("relay"), l1_levels("floor")
# Latency is the figure other load spoils first: a run the generator judged busy voids the verdict.
l1_busy = sum(1 for r in l1_runs("relay") + l1_runs("floor") if r.get("machine_busy"))
# scripts/bench.sh loads the relay at the floor's rates (`--load-base`): the same offered load.
l1_rates = ", both at the floor's rates" if l1_runs("relay") and all(
    r.get("load_base_round_trips_per_s") not in (None, r.get("capacity_round_trips_per_s")) for r in l1_runs("relay")) else ""
for pct in sorted(set(l1r) & set(l1f)):
    r = {k: median([lv[k] for lv in l1r[pct]]) for k in ("p50", "p99", "p99_9")}
    f = {k: median([lv[k] for lv in l1f[pct]]) for k in ("p50", "p99", "p99_9")}
    ok50 = r["p50"] <= f["p50"] + 5
    ok99 = r["p99"] <= 1.2 * f["p99"]
    runs = min(len(l1r[pct]), len(l1f[pct]))
    row(f"L1 {pct}% load p50 / p99 / p99.9 µs (median of {runs} runs each{l1_rates})",
        f"{r['p50']:.0f} / {r['p99']:.0f} / {r['p99_9']:.0f}", f"floor {f['p50']:.0f} / {f['p99']:.0f} / {f['p99_9']:.0f}",
        f"{r['p50'] - f['p50']:+.0f} µs / {r['p99'] / f['p99']:.2f}× / {r['p99_9'] / f['p99_9']:.2f}×",
        "p50 ≤ floor + 5 µs, p99 ≤ 1.2×" + (f" — {l1_busy} runs on a BUSY machine: not comparable" if l1_busy else ""),
        None if l1_busy else ok50 and ok99, ", ".join(x for x, o in (("p50", ok50), ("p99", ok99)) if not o))

m1 = {}
for r in rows:  # the last run of each (pairs, plain/TLS) wins
    if r.get("scenario") == "M1" and r.get("target_kind") == "relay":
        m1[(tls(r), r.get("pairs"))] = r
for _, r in sorted(m1.items()):
    name = f"M1 RSS / idle {'TLS' if tls(r) else 'plain'} connection, {r.get('pairs'):,} pairs" + (f" ({r.get('workers')} workers)" if r.get("workers") else "")
    a = r.get("rss_bytes_per_connection")
    if tls(r):  # yardstick: OpenSSL's own idle SSL (bench/tls-idle-ssl.c), target: at most 1 KB on top
        o = find("M1", "openssl", pairs=r.get("pairs"))
        b = o and o.get("rss_bytes_per_ssl")
        lim = b + 1024 if b is not None else None
        row(name, f"{fmt(a)} B", f"OpenSSL SSL alone {fmt(b)} B" if b is not None else "—",
            f"+{fmt(a - b)} B" if a is not None and b is not None else "—", "≤ SSL alone + 1,024 B",
            None if lim is None or a is None else a <= lim, f"+{(a - lim):,.0f} B" if a is not None and lim is not None else "")
        continue
    f = find("M1", "floor", pairs=r.get("pairs"))
    b = f and f.get("rss_bytes_per_connection")
    row(name, f"{fmt(a)} B", f"floor {fmt(b)} B" if b is not None else "—", "—", "≤ 512 B",
        a is not None and a <= 512, f"+{(a - 512):,.0f} B" if a else "")

print()
idles = [r.get("machine_idle_before") for r in rows if r.get("machine_idle_before") is not None]
if idles:
    print(f"Dates {dates[0]} – {dates[-1]}; machine idle before each run: min {min(idles) * 100:.0f}%, "
          f"median {sorted(idles)[len(idles) // 2] * 100:.0f}% (the method wants ≥ 85%).")
