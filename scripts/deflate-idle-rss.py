"""RSS per idle connection with permessage-deflate negotiated vs not: one relay binary started with
--permessage-deflate, N binary connections from the Python `websockets` client with compression on
(negotiated) or off, RSS (VmRSS) read before and after, twice each (docs/benchmarks.md).

    .venv-test/bin/python scripts/deflate-idle-rss.py .build/debug/pyrycode-relay 2000

Sources are spread over 127.0.x.y, 20 per address (the per-IP upgrade burst)."""
import asyncio, os, subprocess, sys, time, tempfile, socket
import websockets
from websockets.asyncio.client import connect

RELAY, N = sys.argv[1], int(sys.argv[2])

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

async def run(compress):
    port = free_port()
    p = subprocess.Popen([RELAY, "--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "", "--permessage-deflate",
                          "--runtime-dir", tempfile.mkdtemp(), "--max-connections-per-ip", "100000"],
                         stderr=subprocess.DEVNULL)
    for _ in range(500):
        try: socket.create_connection(("127.0.0.1", port)).close(); break
        except OSError: time.sleep(0.01)
    conns = []
    async def one(i):
        src = f"127.0.{1 + i // 20 // 250}.{1 + (i // 20) % 250}"
        return await connect(f"ws://127.0.0.1:{port}/v1/server", local_addr=(src, 0),
                             additional_headers={"X-Pyrycode-Server": f"idle-{compress}-{i}", "X-Pyrycode-Version": "1"},
                             user_agent_header="rss-probe", compression="deflate" if compress else None)
    for i in range(100): conns.append(await one(i))  # warm-up: code and pools paged in
    await asyncio.sleep(1)
    before = rss_kb(p.pid)
    for i in range(100, 100 + N): conns.append(await one(i))
    await asyncio.sleep(2)
    after = rss_kb(p.pid)
    negotiated = sum(1 for c in conns if c.response.headers.get("Sec-WebSocket-Extensions"))
    for c in conns: await c.close()
    p.terminate(); p.wait()
    return (after - before) * 1024 / N, negotiated

for compress in (False, True, False, True):
    per, neg = asyncio.run(run(compress))
    print(f"deflate {'negotiated' if compress else 'off      '}: {per:7.0f} B per idle connection ({neg} of {N + 100} negotiated)")
