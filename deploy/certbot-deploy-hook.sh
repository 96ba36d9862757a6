#!/bin/sh
# certbot deploy hook for pyrycode-relay, installed by deploy/install.sh --domain NAME as
# /etc/letsencrypt/renewal-hooks/deploy/pyrycode-relay. certbot runs it after each successful
# issue or renewal with RENEWED_LINEAGE=/etc/letsencrypt/live/<name>; run it once by hand
# after the first `certbot certonly` (the variable then defaults to this relay's lineage).
#
# Copies the chain and key into the relay's StateDirectory (readable only by the service's
# dynamic user: certbot's own files are root-only) and reloads the relay: SIGHUP re-reads the
# files without dropping a single connection (docs/operations.md).
set -eu

DOMAIN=relay.example.com
LINEAGE=${RENEWED_LINEAGE:-/etc/letsencrypt/live/$DOMAIN}
TLS_DIR=/var/lib/pyrycode-relay/tls

# One certbot serves every certificate on the host: act on ours only.
[ "$(basename "$LINEAGE")" = "$DOMAIN" ] || exit 0

umask 077
mkdir -p "$TLS_DIR"
# Copy to temporary names, then rename: the relay never reads a half-written file.
cp -L "$LINEAGE/fullchain.pem" "$TLS_DIR/.fullchain.pem.new"
cp -L "$LINEAGE/privkey.pem" "$TLS_DIR/.privkey.pem.new"
# DynamicUser: the state directory belongs to the service's (stable, hashed) dynamic uid once the
# service has started; before that it is root's and systemd re-owns it at the first start.
chown --reference="$TLS_DIR/.." "$TLS_DIR" "$TLS_DIR/.fullchain.pem.new" "$TLS_DIR/.privkey.pem.new"
mv -f "$TLS_DIR/.fullchain.pem.new" "$TLS_DIR/fullchain.pem"
mv -f "$TLS_DIR/.privkey.pem.new" "$TLS_DIR/privkey.pem"

if systemctl is-active --quiet pyrycode-relay.service 2>/dev/null; then
    systemctl reload pyrycode-relay.service
fi
