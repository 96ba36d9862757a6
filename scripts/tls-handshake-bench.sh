#!/usr/bin/env bash
# TLS full handshakes: the relay beside nginx, same machine, OpenSSL, certificate and TLS settings
# (docs/benchmarks.md "TLS handshakes beside nginx"). Both servers run on CPU0, relay-bench on CPU1
# keeps 64 handshakes in flight (S7 "full" phase: no resumption, the connection is dropped
# after the answer). The relay answers the WebSocket upgrade (its real work: the accept key, a
# claim in the registry, its log lines), or with RELAY_REQUEST=healthz the request nginx gets;
# nginx (Debian's package, one worker) answers `GET /healthz` with 200. The yardstick is the server's CPU per
# handshake (utime + stime of its process from /proc/PID/stat over the window), because the
# generator, which verifies every signature, saturates its core first. Runs alternate relay,
# nginx, relay, nginx … so a neighbour's load hits both alike; the ratio is taken per run.
#
# CALLGRIND=1 prices the same work in instructions instead, which other processes' load does not
# change: each server runs under callgrind (nginx as a single process), 4 handshakes in flight,
# collection on for DURATION seconds; instructions ÷ requests answered in that time (the
# relay's `server_claimed` log lines, nginx's access-log lines). User space only: the kernel's
# share (accept, reads, writes, close) is not in it.
#
# STRACE=1 counts the system calls per handshake the same way (`strace -c` attached to each server
# for DURATION seconds): the kernel's side of the work, also independent of the load.
#
#   bash scripts/tls-handshake-bench.sh               # RUNS=5 DURATION=5; needs nginx (apt-get install -y nginx-light)
#   CALLGRIND=1 bash scripts/tls-handshake-bench.sh   # RUNS=1 DURATION=20 make sense here
#   STRACE=1 RUNS=1 bash scripts/tls-handshake-bench.sh
#
# Env: RUNS (5), DURATION (s per window, 5), BIN (.build/release, built if missing),
#      RELAY_PORT (18453), NGINX_PORT (18454), RESULTS (append relay-bench's JSON lines here too),
#      LOGS (1; 0 = a diagnosis: the relay's stderr to /dev/null, nginx's access log off, so the
#      log writes of both leave the comparison; not with CALLGRIND or STRACE, which count log lines),
#      RELAY_REQUEST (upgrade; healthz = `GET /healthz` as nginx gets it, the handshakes alike on
#      both sides; CPU runs only — CALLGRIND and STRACE count the relay's `server_claimed` lines),
#      CALLGRIND (0), STRACE (0), NGINX_TICKETS (TLS 1.3 tickets nginx sends per full handshake: 2, its stock
#      behaviour (OpenSSL's default; nginx has no directive for it); 1 = as many as the relay sends).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
BIN=${BIN:-.build/release}
RELAY_PORT=${RELAY_PORT:-18453}
NGINX_PORT=${NGINX_PORT:-18454}
RESULTS=${RESULTS:-}
CALLGRIND=${CALLGRIND:-0}
STRACE=${STRACE:-0}
NGINX_TICKETS=${NGINX_TICKETS:-2}
LOGS=${LOGS:-1}
RELAY_REQUEST=${RELAY_REQUEST:-upgrade}
RELAY_GET=()
case $RELAY_REQUEST in
  upgrade) ;;
  healthz) RELAY_GET=(--storm-get /healthz) ;;
  *) echo "tls-handshake-bench: RELAY_REQUEST is upgrade or healthz" >&2; exit 1 ;;
esac
[[ $RELAY_REQUEST == upgrade || ($CALLGRIND != 1 && $STRACE != 1) ]] \
  || { echo "tls-handshake-bench: RELAY_REQUEST=healthz is for CPU runs (CALLGRIND and STRACE count server_claimed lines)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "tls-handshake-bench: nginx is not installed (apt-get install -y nginx-light)" >&2; exit 1; }
[[ -x $BIN/pyrycode-relay && -x $BIN/relay-bench ]] || swift build -c release 2>&1 | tail -n 1

DIR=$(mktemp -d)
RELAY_PID= NGINX_PID=
cleanup() {
  [[ -n $RELAY_PID ]] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
  [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
source scripts/bench-pki.sh
bench_pki "$DIR/pki"

VG=()  # under callgrind: instrumentation starts off, `callgrind_control -i on` opens the window
[[ $CALLGRIND == 1 ]] && VG=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/callgrind.%p")

wait_port() {
  for _ in $(seq 1200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "tls-handshake-bench: port $1 did not open" >&2; return 1
}

mkdir -p "$DIR/relay"
taskset -c 0 "${VG[@]}" "$BIN/pyrycode-relay" --tls-cert "$DIR/pki/leaf.crt" --tls-key "$DIR/pki/leaf.key" \
  --https-listen "127.0.0.1:$RELAY_PORT" --metrics-listen "" --runtime-dir "$DIR/relay" \
  >"$([[ $LOGS == 1 ]] && echo "$DIR/relay.log" || echo /dev/null)" 2>&1 &
RELAY_PID=$!

# nginx with the relay's TLS settings (TLSContext.swift, docs/protocol.md §2.1): TLS 1.2 and 1.3,
# the same cipher lists and order (server preference), X25519 then P-256, tickets on and no
# server-side session cache. The relay sends one TLS 1.3 ticket per full handshake
# (TLSContext.ticketsPerHandshake); nginx sends NGINX_TICKETS.
mkdir -p "$DIR/nginx"
cat >"$DIR/nginx/nginx.conf" <<CONF
daemon off;
master_process $([[ $CALLGRIND == 1 ]] && echo off || echo on);
worker_processes 1;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 4096; }
http {
    # The relay logs every connection (docs/operations.md); nginx logs every request, as it does by default.
    access_log $([[ $LOGS == 1 ]] && echo "$DIR/nginx/access.log" || echo off);
    client_body_temp_path $DIR/nginx/body;
    proxy_temp_path $DIR/nginx/proxy;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $DIR/pki/leaf.crt;
        ssl_certificate_key $DIR/pki/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_prefer_server_ciphers on;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_cache off;
        ssl_session_tickets on;
        ssl_conf_command NumTickets $NGINX_TICKETS;
        location = /healthz { return 200; }
    }
}
CONF
taskset -c 0 "${VG[@]}" nginx -c "$DIR/nginx/nginx.conf" -e "$DIR/nginx/error.log" 2>>"$DIR/nginx/error.log" &
NGINX_PID=$!
wait_port "$RELAY_PORT"; wait_port "$NGINX_PORT"
WORKER=$NGINX_PID
[[ $CALLGRIND == 1 ]] || WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)
[[ -n $WORKER ]] || { echo "tls-handshake-bench: no nginx worker" >&2; cat "$DIR/nginx/error.log" >&2; exit 1; }

negotiated() { # PORT: protocol, cipher, key exchange group, signature as `openssl s_client` shows them
  openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null | awk '
    /^New, / { sub(/,$/, "", $2); p = $2 " " $5 }
    /^Server Temp Key:/ { sub(/^Server Temp Key: /, ""); k = $0 }
    /^Peer signature type:/ { s = $4 }
    END { print p ", " k ", " s }'
}
echo "tls-handshake-bench: relay negotiates $(negotiated "$RELAY_PORT")"
echo "tls-handshake-bench: nginx negotiates $(negotiated "$NGINX_PORT")  (nginx $(nginx -v 2>&1 | sed 's|.*/||'), $(openssl version | cut -d' ' -f1-2)); TLS 1.3 tickets per full handshake: relay 1, nginx $NGINX_TICKETS"

answered() { # KIND: requests answered so far
  if [[ $1 == relay ]]; then grep -c 'msg=server_claimed' "$DIR/relay.log" || true; else wc -l <"$DIR/nginx/access.log"; fi
}

instructions() { # KIND PID [args]: user-space instructions per full handshake
  local kind=$1 pid=$2 before after; shift 2
  taskset -c 1 "$BIN/relay-bench" run S7 --storm-phases full --pairs 4 --repeats 1 --warmup 0 --duration 2 \
    --quiet "$@" >/dev/null 2>&1 || true   # warm-up: code paged in, pools grown
  callgrind_control -z "$pid" >/dev/null 2>&1; callgrind_control -i on "$pid" >/dev/null 2>&1
  before=$(answered "$kind")
  taskset -c 1 "$BIN/relay-bench" run S7 --storm-phases full --pairs 4 --repeats 1 --warmup 0 --duration "$DURATION" \
    --quiet "$@" >/dev/null 2>&1 || true
  callgrind_control -i off "$pid" >/dev/null 2>&1
  after=$(answered "$kind")
  callgrind_control -d "$pid" >/dev/null 2>&1
  local ir
  ir=$(cat "$DIR"/callgrind."$pid".* 2>/dev/null | awk '/^(summary|totals):/ { s += $2 } END { print s + 0 }')
  [[ -n ${KEEP_PROFILES:-} ]] && cp "$DIR"/callgrind."$pid".* "$KEEP_PROFILES"/ 2>/dev/null
  rm -f "$DIR"/callgrind."$pid".*
  echo "$ir $((after - before))"
}

if [[ $CALLGRIND == 1 ]]; then
  for i in $(seq "$RUNS"); do
    read -r ri rn < <(instructions relay "$RELAY_PID" --target "wss://127.0.0.1:$RELAY_PORT")
    read -r ni nn < <(instructions nginx "$WORKER" --target "wss://127.0.0.1:$NGINX_PORT" --storm-get /healthz)
    python3 -c 'import sys
i, ri, rn, ni, nn = sys.argv[1], *map(float, sys.argv[2:])
r, n = ri / max(rn, 1), ni / max(nn, 1)
print(f"run {i}: user-space instructions per full handshake (callgrind): relay {r:,.0f} Ir ({rn:.0f} handshakes), "
      f"nginx {n:,.0f} Ir ({nn:.0f} handshakes); relay/nginx {r / max(n, 1):.3f}")' "$i" "$ri" "$rn" "$ni" "$nn"
  done
  exit 0
fi

syscalls() { # KIND PID [args]: "name=calls/handshake ..." over one window, strace attached
  local kind=$1 pid=$2 before after; shift 2
  taskset -c 1 "$BIN/relay-bench" run S7 --storm-phases full --repeats 1 --warmup 0 --duration 1 \
    --quiet "$@" >/dev/null 2>&1 || true   # warm-up
  before=$(answered "$kind")
  strace -c -f -o "$DIR/strace.$kind" -p "$pid" 2>/dev/null &
  local tracer=$!
  sleep 0.5
  taskset -c 1 "$BIN/relay-bench" run S7 --storm-phases full --repeats 1 --warmup 0 --duration "$DURATION" \
    --quiet "$@" >/dev/null 2>&1 || true
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
  after=$(answered "$kind")
  # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall
  sort -k4,4nr "$DIR/strace.$kind" | awk -v n="$((after - before))" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
      t += $4; if (++k <= 10) out = out sprintf(" %s %.2f", $NF, $4 / n) }
    END { printf "%.1f per handshake (%d handshakes):%s\n", t / n, n, out }'
}

if [[ $STRACE == 1 ]]; then
  for i in $(seq "$RUNS"); do
    echo "run $i: system calls, relay: $(syscalls relay "$RELAY_PID" --target "wss://127.0.0.1:$RELAY_PORT")"
    echo "run $i: system calls, nginx: $(syscalls nginx "$WORKER" --target "wss://127.0.0.1:$NGINX_PORT" --storm-get /healthz)"
  done
  exit 0
fi

one() { # KIND PID [args]: server CPU µs per full handshake, and handshakes/s of wall time
  local kind=$1 pid=$2; shift 2
  local out=$DIR/$kind.jsonl
  : >"$out"
  taskset -c 1 "$BIN/relay-bench" run S7 --storm-phases full --repeats 1 --warmup 1 --duration "$DURATION" \
    --relay-pid "$pid" --label "tls-handshake-$kind$([[ $RELAY_REQUEST == healthz ]] && echo @healthz)" \
    --json-out "$out" --quiet "$@" 2>/dev/null || true
  [[ -n $RESULTS ]] && cat "$out" >>"$RESULTS"
  python3 -c 'import json,sys
j = json.loads(open(sys.argv[1]).read().splitlines()[-1])
v = lambda k: j[k]["median"] if isinstance(j.get(k), dict) else j.get(k)
print(v("full_target_cpu_us_per_msg") or 0, v("full_msgs_per_s") or 0, v("full_target_cpu_pct") or 0)' "$out"
}

relay_us=() nginx_us=()
for i in $(seq "$RUNS"); do
  read -r r rw rp < <(one relay "$RELAY_PID" --target "wss://127.0.0.1:$RELAY_PORT" "${RELAY_GET[@]}")
  read -r n nw np < <(one nginx "$WORKER" --target "wss://127.0.0.1:$NGINX_PORT" --storm-get /healthz)
  relay_us+=("$r") nginx_us+=("$n")
  python3 -c 'import sys
r, rw, rp, n, nw, np = map(float, sys.argv[2:])
print(f"run {sys.argv[1]}: server CPU per full handshake: relay {r:.1f} µs ({rw:,.0f}/s at {rp:.0f}% CPU), "
      f"nginx {n:.1f} µs ({nw:,.0f}/s at {np:.0f}% CPU); relay/nginx {r / max(n, 1e-9):.3f}")' \
    "$i" "$r" "$rw" "$rp" "$n" "$nw" "$np"
done
python3 -c 'import statistics as st, sys
k = len(sys.argv) // 2
r, n = list(map(float, sys.argv[1:k + 1])), list(map(float, sys.argv[k + 1:]))
ratios = sorted(a / b for a, b in zip(r, n) if b)
mr, mn, each = st.median(r), st.median(n), " ".join(f"{x:.3f}" for x in ratios)
verdict = "met" if st.median(ratios) <= 1 else "NOT met"
print(f"tls-handshake-bench: median server CPU per full handshake: relay {mr:.1f} µs = {1e6 / mr:,.0f} handshakes/s per core, "
      f"nginx {mn:.1f} µs = {1e6 / mn:,.0f}/s per core")
print(f"tls-handshake-bench: relay/nginx CPU per handshake, per run: {each}; median {st.median(ratios):.3f} "
      f"(target ≤ 1.000: {verdict})")' "${relay_us[@]}" "${nginx_us[@]}"
