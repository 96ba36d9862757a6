"""The soak's plot: RSS, open fds, live connections and loop-iteration p99 over time, one line
per relay, partitions shaded. Plain SVG written by hand (no plotting library)."""

from xml.sax.saxutils import escape

COLORS = {"plain": "#1f77b4", "tls": "#d62728"}
W, PANEL_H, LEFT, TOP, GAP = 900, 150, 70, 40, 45


def interval_p99(prev, cur):
    """Upper bound of the bucket holding the p99 of the iterations between two scrapes (ms)."""
    if not prev or not cur:
        return None
    before = dict(prev["buckets"])
    deltas = [(le, c - before.get(le, 0)) for le, c in cur["buckets"]]
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None
    for le, c in deltas:
        if c >= 0.99 * total:
            return (le if le != float("inf") else deltas[-2][0] * 2) * 1000
    return None


def series(samples, relay):
    out = {"rss": [], "fds": [], "conns": [], "p99": []}
    prev = None
    for row in samples:
        m = row.get(relay)
        if not m:
            continue
        t = row["t"]
        out["rss"].append((t, m.get("process_resident_memory_bytes", 0) / 2**20))
        out["fds"].append((t, m.get("process_open_fds", 0)))
        out["conns"].append((t, m.get("pyrycode_relay_live_connections", 0)
                             + m.get("pyrycode_relay_half_open_connections", 0)))
        p = interval_p99(prev, m)
        if p is not None:
            out["p99"].append((t, p))
        prev = m
    return out


def write_svg(path, samples, events, summary):
    relays = [r for r in ("plain", "tls") if any(r in row for row in samples)]
    data = {r: series(samples, r) for r in relays}
    panels = [("rss", "RSS (MiB)"), ("fds", "open fds"), ("conns", "connections (live + half-open)"),
              ("p99", "loop iteration p99 per second (ms)")]
    tmax = max((row["t"] for row in samples), default=1) or 1
    height = TOP + len(panels) * (PANEL_H + GAP) + 20
    pw = W - LEFT - 20
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" '
         f'font-size="11"><rect width="100%" height="100%" fill="white"/>']
    title = (f"pyrycode-relay soak: {summary.get('load_seconds')} s load, "
             f"{summary['messages']['checked_delivered']} checked messages, "
             f"{summary['connections_opened']} connections, network faults: {summary['network_faults']}")
    o.append(f'<text x="{LEFT}" y="20" font-size="13">{escape(title)}</text>')
    for i, r in enumerate(relays):
        o.append(f'<text x="{W - 160 + i * 70}" y="20" fill="{COLORS[r]}">— {r}</text>')
    for k, (key, label) in enumerate(panels):
        y0 = TOP + k * (PANEL_H + GAP)
        vals = [v for r in relays for _, v in data[r][key]]
        vmax = max(vals, default=1) * 1.1 or 1
        o.append(f'<rect x="{LEFT}" y="{y0}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#999"/>')
        o.append(f'<text x="{LEFT}" y="{y0 - 5}">{escape(label)}</text>')
        for frac in (0, 0.5, 1):
            yy = y0 + PANEL_H - frac * PANEL_H
            o.append(f'<text x="{LEFT - 5}" y="{yy + 4:.1f}" text-anchor="end">{vmax * frac:.4g}</text>')
        for t0, t1, what in events:
            x0, x1 = LEFT + t0 / tmax * pw, LEFT + t1 / tmax * pw
            o.append(f'<rect x="{x0:.1f}" y="{y0}" width="{max(x1 - x0, 1):.1f}" height="{PANEL_H}" '
                     f'fill="#f0c040" opacity="0.35"><title>{escape(what)}</title></rect>')
        for r in relays:
            pts = " ".join(f"{LEFT + t / tmax * pw:.1f},{y0 + PANEL_H - v / vmax * PANEL_H:.1f}"
                           for t, v in data[r][key])
            if pts:
                o.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[r]}" stroke-width="1.2"/>')
        if k == len(panels) - 1:
            for frac in (0, 0.25, 0.5, 0.75, 1):
                o.append(f'<text x="{LEFT + frac * pw:.1f}" y="{y0 + PANEL_H + 14}" text-anchor="middle">'
                         f'{tmax * frac:.0f} s</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o))
