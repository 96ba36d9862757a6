#!/usr/bin/env bash
# Installs (or upgrades) pyrycode-relay as a systemd service on a Debian/Ubuntu VM.
# Idempotent: running it again changes only what differs, and never overwrites the env file
# or the certificates. docs/operations.md walks through a whole install.
#
# Usage: deploy/install.sh [options]
#   --binary PATH     the relay binary to install as /usr/local/bin/pyrycode-relay
#                     (a static release build: swift build -c release --static-swift-stdlib
#                     --product pyrycode-relay); omitted → the installed binary is left alone
#   --domain NAME     public name: written into a new env file (RELAY_ARGS=--domain NAME) and
#                     into the certbot deploy hook, which is installed only with this option
#   --socket          also install pyrycode-relay.socket (socket activation of :443)
#   --shards N        sharded deployment behind HAProxy (docs/operations.md, "Sharded deployment"):
#                     installs pyrycode-relay@.service instead of pyrycode-relay.service,
#                     creates shards.env (RELAY_SHARDS=N) and shard-<i>.env (127.0.0.1:8100+i,
#                     metrics 127.0.0.1:9100+i) once, and writes /etc/pyrycode-relay/haproxy.cfg:
#                     deploy/haproxy.cfg for N shards. Not with --domain or --socket (TLS is HAProxy's)
#   --root DIR        install under DIR instead of / (tests, image builds); implies --no-systemctl
#   --prefix DIR      same as --root
#   --no-systemctl    do not run systemctl daemon-reload
#   --dry-run         print what would be done; change nothing
#   -h, --help        this text
# Exit: 0 done (or nothing to do), 1 a step failed, 2 bad usage.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$SRC")
ROOT=""
BINARY=""
DOMAIN=""
SOCKET=0
SHARDS=""
DRY=0
SYSTEMCTL=1

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die_usage() { echo "install.sh: $*" >&2; echo "Run deploy/install.sh --help for usage." >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --binary) [[ $# -ge 2 ]] || die_usage "--binary needs a path"; BINARY=$2; shift 2 ;;
    --binary=*) BINARY=${1#*=}; shift ;;
    --domain) [[ $# -ge 2 ]] || die_usage "--domain needs a name"; DOMAIN=$2; shift 2 ;;
    --domain=*) DOMAIN=${1#*=}; shift ;;
    --root|--prefix) [[ $# -ge 2 ]] || die_usage "$1 needs a directory"; ROOT=$2; shift 2 ;;
    --root=*|--prefix=*) ROOT=${1#*=}; shift ;;
    --socket) SOCKET=1; shift ;;
    --shards) [[ $# -ge 2 ]] || die_usage "--shards needs a number"; SHARDS=$2; shift 2 ;;
    --shards=*) SHARDS=${1#*=}; shift ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown option $1" ;;
  esac
done

if [[ -n "$ROOT" ]]; then
  [[ -d "$ROOT" ]] || die_usage "--root $ROOT: not a directory"
  ROOT=$(cd "$ROOT" && pwd)
  [[ "$ROOT" == / ]] && ROOT=""
fi
[[ -n "$ROOT" ]] && SYSTEMCTL=0
if [[ -n "$DOMAIN" && ! "$DOMAIN" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
  die_usage "--domain $DOMAIN: not a host name"
fi
if [[ -n "$SHARDS" ]]; then
  # As the relay's --shard i/N: 1 <= N <= 1024 (Limits.maxShards), plain decimal.
  [[ "$SHARDS" =~ ^[1-9][0-9]{0,3}$ && $SHARDS -le 1024 ]] || die_usage "--shards $SHARDS: want a number from 1 to 1024"
  [[ -z "$DOMAIN" && $SOCKET == 0 ]] || die_usage "--shards cannot be combined with --domain or --socket: HAProxy holds TLS and :443"
fi
if [[ -n "$BINARY" && ! -x "$BINARY" ]]; then
  die_usage "--binary $BINARY: not an executable file"
fi
for f in pyrycode-relay.service pyrycode-relay.socket pyrycode-relay.env.example certbot-deploy-hook.sh \
         pyrycode-relay@.service pyrycode-relay-shards.env.example haproxy.cfg; do
  [[ -f "$SRC/$f" ]] || { echo "install.sh: missing $SRC/$f" >&2; exit 1; }
done
if [[ -z "$ROOT" && $DRY == 0 && $(id -u) != 0 ]]; then
  echo "install.sh: installing under / needs root (or use --root DIR / --dry-run)" >&2
  exit 1
fi

# Paths on the target system (the unit files name these; keep them in sync).
BIN_PATH=/usr/local/bin/pyrycode-relay
UNIT_DIR=/etc/systemd/system
CONF_DIR=/etc/pyrycode-relay
ENV_FILE=$CONF_DIR/pyrycode-relay.env
STATE_DIR=/var/lib/pyrycode-relay   # StateDirectory=; systemd moves it under /var/lib/private (DynamicUser)
TLS_DIR=$STATE_DIR/tls
DOC_DIR=/usr/local/share/doc/pyrycode-relay
HOOK=/etc/letsencrypt/renewal-hooks/deploy/pyrycode-relay

say() { printf '%s\n' "$*"; }
if [[ $DRY == 1 ]]; then say "dry run: nothing will be changed${ROOT:+ (root $ROOT)}"; fi

# ensure_dir PATH MODE
ensure_dir() {
  local t=$ROOT$1 mode=$2
  if [[ -d "$t" ]]; then
    if [[ $(stat -c %a "$t") == "${mode#0}" ]]; then say "unchanged  $1/"; return; fi
    if [[ $DRY == 1 ]]; then say "would chmod $mode $1/"; return; fi
    chmod "$mode" "$t"; say "chmod $mode $1/"; return
  fi
  if [[ $DRY == 1 ]]; then say "would mkdir -m $mode $1/"; return; fi
  mkdir -p "$t"; chmod "$mode" "$t"; say "mkdir      $1/ ($mode)"
}

# ensure_file SRC DEST MODE [LABEL]: install SRC when DEST is missing or differs (ours to overwrite).
ensure_file() {
  local src=$1 t=$ROOT$2 mode=$3 label=${4:-$1}
  if [[ -f "$t" ]] && cmp -s "$src" "$t" && [[ $(stat -c %a "$t") == "${mode#0}" ]]; then
    say "unchanged  $2"; return
  fi
  local verb=install; [[ -e "$t" ]] && verb=update
  if [[ $DRY == 1 ]]; then say "would $verb $2 ($mode) from $label"; return; fi
  local tmp; tmp=$(mktemp "$t.XXXXXX")
  cp "$src" "$tmp"; chmod "$mode" "$tmp"; mv -f "$tmp" "$t"   # atomic: a running binary is replaced, not rewritten
  say "$(printf '%-10s' "$verb") $2 ($mode)"
}

# render TEMPLATE: the template with the domain filled in, on stdout.
render() {
  if [[ -n "$DOMAIN" ]]; then sed "s/relay\.example\.com/$DOMAIN/g" "$1"; else cat "$1"; fi
}

# ensure_new_file SRC DEST MODE: install only when DEST is missing (the operator owns it after).
ensure_new_file() {
  local src=$1 t=$ROOT$2 mode=$3
  if [[ -e "$t" ]]; then say "kept       $2 (exists; edit it by hand)"; return; fi
  if [[ $DRY == 1 ]]; then say "would create $2 ($mode)"; return; fi
  local tmp; tmp=$(mktemp "$t.XXXXXX")
  cp "$src" "$tmp"; chmod "$mode" "$tmp"; mv -f "$tmp" "$t"
  say "create     $2 ($mode)"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say "user:      none to create (DynamicUser=yes allocates one at start)"
ensure_dir /usr/local/bin 0755
ensure_dir "$UNIT_DIR" 0755
ensure_dir "$CONF_DIR" 0755
ensure_dir "$DOC_DIR" 0755
# TLS material lives in the StateDirectory; the deploy hook copies certbot's files there.
if [[ -L "$ROOT$STATE_DIR" ]]; then
  say "unchanged  $STATE_DIR/ (managed by systemd: DynamicUser state directory)"
else
  ensure_dir "$STATE_DIR" 0700
fi
ensure_dir "$TLS_DIR" 0700

if [[ -n "$BINARY" ]]; then
  ensure_file "$BINARY" "$BIN_PATH" 0755
elif [[ -x "$ROOT$BIN_PATH" ]]; then
  say "unchanged  $BIN_PATH (no --binary given)"
else
  say "warning:   $BIN_PATH is not installed; pass --binary PATH" >&2
fi

# render_haproxy N: deploy/haproxy.cfg for N shards (the shipped file is the N = 3 rendering):
# mod(N), backends shard0..N-1 at 127.0.0.1:8100+i, any_shard over all of them.
render_haproxy() {
  local n=$1 i
  sed -n '/^backend shard0$/q;p' "$SRC/haproxy.cfg" \
    | sed -e "s/crc32,mod(3)/crc32,mod($n)/" -e "s/^# This file: N = 3\.$/# This file: N = $n./"
  for ((i = 0; i < n; i++)); do
    printf 'backend shard%d\n    option httpchk GET /healthz\n    http-check expect status 200\n' "$i"
    printf '    server shard%d 127.0.0.1:%d check inter 1s fall 2 rise 1 maxconn 60000\n\n' "$i" $((8100 + i))
  done
  printf 'backend any_shard\n    balance roundrobin\n    option httpchk GET /healthz\n    http-check expect status 200\n'
  for ((i = 0; i < n; i++)); do
    printf '    server shard%d 127.0.0.1:%d check inter 1s fall 2 rise 1\n' "$i" $((8100 + i))
  done
}

if [[ -n "$SHARDS" ]]; then
  ensure_file "$SRC/pyrycode-relay@.service" "$UNIT_DIR/pyrycode-relay@.service" 0644
  sed "s/^RELAY_SHARDS=.*/RELAY_SHARDS=$SHARDS/" "$SRC/pyrycode-relay-shards.env.example" >"$WORK/shards.env"
  ensure_new_file "$WORK/shards.env" "$CONF_DIR/shards.env" 0640
  for ((i = 0; i < SHARDS; i++)); do
    printf '# pyrycode-relay@%d: must match server shard%d in haproxy.cfg.\nSHARD_LISTEN=127.0.0.1:%d\nSHARD_METRICS=127.0.0.1:%d\n' \
      "$i" "$i" $((8100 + i)) $((9100 + i)) >"$WORK/shard-$i.env"
    ensure_new_file "$WORK/shard-$i.env" "$CONF_DIR/shard-$i.env" 0640
  done
  render_haproxy "$SHARDS" >"$WORK/haproxy.cfg"
  ensure_file "$WORK/haproxy.cfg" "$CONF_DIR/haproxy.cfg" 0644 "$SRC/haproxy.cfg (for $SHARDS shards)"
else
  ensure_file "$SRC/pyrycode-relay.service" "$UNIT_DIR/pyrycode-relay.service" 0644
  if [[ $SOCKET == 1 ]]; then
    ensure_file "$SRC/pyrycode-relay.socket" "$UNIT_DIR/pyrycode-relay.socket" 0644
  fi
  render "$SRC/pyrycode-relay.env.example" >"$WORK/env"
  ensure_new_file "$WORK/env" "$ENV_FILE" 0640
fi
# operations.md links architecture.md, and the relay's single-instance refusal names
# $DOC_DIR/architecture.md: both go to the same directory.
for doc in operations.md architecture.md; do
  if [[ -f "$REPO/docs/$doc" ]]; then
    ensure_file "$REPO/docs/$doc" "$DOC_DIR/$doc" 0644
  fi
done
if [[ -n "$DOMAIN" ]]; then
  ensure_dir /etc/letsencrypt 0755
  ensure_dir /etc/letsencrypt/renewal-hooks 0755
  ensure_dir /etc/letsencrypt/renewal-hooks/deploy 0755
  render "$SRC/certbot-deploy-hook.sh" >"$WORK/hook"
  ensure_file "$WORK/hook" "$HOOK" 0755 "$SRC/certbot-deploy-hook.sh (domain $DOMAIN)"
fi

if [[ $SYSTEMCTL == 1 ]]; then
  if [[ -d /run/systemd/system ]]; then
    if [[ $DRY == 1 ]]; then say "would run  systemctl daemon-reload"
    else systemctl daemon-reload; say "ran        systemctl daemon-reload"; fi
  else
    say "skipped    systemctl daemon-reload (systemd is not running)"
  fi
fi

say ""
if [[ -n "$SHARDS" ]]; then
  last=$((SHARDS - 1))
  say "next steps (docs/operations.md, \"Sharded deployment\"):"
  say "  1. apt-get install haproxy; certificate chain and key in one file: /etc/haproxy/certs/relay.pem"
  say "  2. install -m 0644 $CONF_DIR/haproxy.cfg /etc/haproxy/haproxy.cfg && haproxy -c -f /etc/haproxy/haproxy.cfg"
  say "  3. systemctl enable --now pyrycode-relay@{0..$last}"
  say "  4. systemctl reload haproxy"
  exit 0
fi
say "next steps (docs/operations.md):"
say "  1. certificate: certbot certonly --standalone -d ${DOMAIN:-relay.example.com}, then run $HOOK once"
say "  2. edit $ENV_FILE"
if [[ $SOCKET == 1 ]]; then
  # The socket unit cannot bind :443 while a running service holds it: enable --now would fail.
  say "  3. systemctl stop pyrycode-relay.service   (if it runs: it holds :443, which the socket unit must bind)"
  say "  4. systemctl enable --now pyrycode-relay.socket"
  say "  5. systemctl enable --now pyrycode-relay.service"
else
  say "  3. systemctl enable --now pyrycode-relay.service"
fi
