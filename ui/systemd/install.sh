#!/usr/bin/env bash
# Install the BorgFleet service on a systemd host from a checkout whose .venv is set up
# (`make setup`). Idempotent. Usage:
#   ui/systemd/install.sh [--workers N] [--user borgfleet] [--bind 127.0.0.1:5080] [--no-web] [--no-redis-acl]
# Worker-only hosts (scale out): --workers N --no-web --no-scheduler, with the same
# /etc/borgfleet/borgfleet.env (MariaDB + Redis of the main host).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORKERS=2 USER_NAME=borgfleet BIND=127.0.0.1:5080 WEB=1 SCHED=1 REDIS_ACL=1
# The service's Redis user may run every command but the dangerous ones (FLUSHALL, CONFIG, KEYS,
# DEBUG, SHUTDOWN ...), plus the three RQ needs. tests/hardening/test_web.py runs a worker with it.
REDIS_ACL_RULES='~* &* +@all -@dangerous +client|list +client|setname +info'
REDIS_CONF=/etc/redis/redis.conf
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --user) USER_NAME="$2"; shift 2 ;;
    --bind) BIND="$2"; shift 2 ;;
    --no-web) WEB=0; shift ;;
    --no-scheduler) SCHED=0; shift ;;
    --no-redis-acl) REDIS_ACL=0; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
[[ "$WORKERS" =~ ^[0-9]{1,2}$ ]] || { echo "--workers must be a number" >&2; exit 2; }
[[ "$USER_NAME" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || { echo "bad --user" >&2; exit 2; }
[ -d /run/systemd/system ] || { echo "systemd is not running here; use 'make ui' or 'borgfleet-ui serve'" >&2; exit 1; }
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "$ROOT/.venv is missing: run 'make setup' first" >&2; exit 1; }
[ -f "$ROOT/ui/node_modules/bootstrap/dist/css/bootstrap.min.css" ] || { echo "the pages' toolkit is missing: run 'make setup' first" >&2; exit 1; }

id "$USER_NAME" >/dev/null 2>&1 || useradd --system --create-home --home-dir "/var/lib/$USER_NAME" \
  --shell /usr/sbin/nologin "$USER_NAME"
install -d -m 0750 -o root -g "$USER_NAME" /etc/borgfleet
if [ ! -f /etc/borgfleet/borgfleet.env ]; then
  umask 027
  cat > /etc/borgfleet/borgfleet.env <<ENV
BORGFLEET_DB_HOST=127.0.0.1
BORGFLEET_DB_PORT=3306
BORGFLEET_DB_USER=borgfleet
BORGFLEET_DB_PASSWORD=
BORGFLEET_DB_NAME=borgfleet
BORGFLEET_REDIS_URL=redis://127.0.0.1:6379/0
BORGFLEET_SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')
BORGFLEET_RUN_DIR=/var/lib/$USER_NAME/runs
BORGFLEET_BIND=$BIND
ENV
  chgrp "$USER_NAME" /etc/borgfleet/borgfleet.env
  echo "wrote /etc/borgfleet/borgfleet.env: set the database credentials, then run this script again"
fi
ENVF=/etc/borgfleet/borgfleet.env
# Web security settings, added to env files written by older versions too (existing values are kept).
# The session cookie travels only over HTTPS (the TLS proxy in front); HSTS is sent.
grep -q '^BORGFLEET_SECURE_COOKIES=' "$ENVF" || echo "BORGFLEET_SECURE_COOKIES=1" >> "$ENVF"
# Bound to loopback, the web unit sits behind a local TLS proxy: trust its X-Forwarded-For (login limits per address).
case "$BIND" in
  127.*|localhost:*|\[::1\]:*) PROXIES=1 ;;
  *) PROXIES=0 ;;
esac
grep -q '^BORGFLEET_TRUSTED_PROXIES=' "$ENVF" || echo "BORGFLEET_TRUSTED_PROXIES=$PROXIES" >> "$ENVF"
grep -q '^BORGFLEET_SESSION_MINUTES=' "$ENVF" || echo "BORGFLEET_SESSION_MINUTES=480" >> "$ENVF"

# Redis on this host: an ACL user `borgfleet` with a generated password, the password-less default
# user switched off, and the password in BORGFLEET_REDIS_URL. Only for the local Redis at its default
# URL, once (a marked block in redis.conf); --no-redis-acl leaves Redis alone.
if [ "$WEB" = 1 ] && [ "$REDIS_ACL" = 1 ] && [ -f "$REDIS_CONF" ] && ! grep -q '^# BEGIN borgfleet' "$REDIS_CONF"; then
  if ! grep -q '^BORGFLEET_REDIS_URL=redis://127.0.0.1:6379/0$' "$ENVF"; then
    echo "BORGFLEET_REDIS_URL is not the default local Redis: its ACL is left to you (docs/service.md)"
  elif grep -q '^aclfile' "$REDIS_CONF"; then
    echo "$REDIS_CONF uses an aclfile: add the borgfleet user there (docs/service.md)"
  else
    pw="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
    umask 027
    cat >> "$REDIS_CONF" <<CONF
# BEGIN borgfleet (ui/systemd/install.sh): the service's own user; no access without a password
user default off
user borgfleet on >$pw $REDIS_ACL_RULES
# END borgfleet
CONF
    sed -i "s|^BORGFLEET_REDIS_URL=redis://127.0.0.1:6379/0\$|BORGFLEET_REDIS_URL=redis://borgfleet:$pw@127.0.0.1:6379/0|" "$ENVF"
    systemctl restart redis-server.service
    RESTART=1   # running units still hold the old URL
    echo "Redis now requires the borgfleet user's password (in $ENVF); other users of this Redis need an ACL user of their own"
  fi
fi

for unit in borgfleet-web.service borgfleet-scheduler.service borgfleet-worker@.service borgfleet-workers.target; do
  sed -e "s|@ROOT@|$ROOT|g" -e "s|@USER@|$USER_NAME|g" "$ROOT/ui/systemd/$unit" > "/etc/systemd/system/$unit"
done

# The workers page controls worker units through sudo: exactly its commands, checked before install.
tmp="$(mktemp)"
PYTHONPATH="$ROOT/ui" "$PY" -m borgfleet_ui sudoers --user "$USER_NAME" --workers "$WORKERS" > "$tmp"
visudo -cf "$tmp"
install -m 0440 "$tmp" /etc/sudoers.d/borgfleet
rm -f "$tmp"

set -a; . /etc/borgfleet/borgfleet.env; set +a
KEY="${BORGFLEET_SECRET_KEY_FILE:-/etc/borgfleet/secret.key}"
if [ "$WEB" = 1 ]; then
  # Creates the passphrase key file when missing and encrypts plain-text passphrases.
  PYTHONPATH="$ROOT/ui" "$PY" -m borgfleet_ui db upgrade
  PYTHONPATH="$ROOT/ui" "$PY" -m borgfleet_ui create-admin --if-missing
elif [ ! -f "$KEY" ]; then
  echo "$KEY is missing: copy it from the main host (it decrypts the backup passphrases)" >&2; exit 1
fi
# Web and workers run as the service account: the key is theirs alone.
chown "$USER_NAME:$USER_NAME" "$KEY"
chmod 0600 "$KEY"

systemctl daemon-reload
[ "${RESTART:-0}" = 1 ] && systemctl try-restart borgfleet-web.service borgfleet-scheduler.service 'borgfleet-worker@*.service'
[ "$WEB" = 1 ] && systemctl enable --now borgfleet-web.service
[ "$SCHED" = 1 ] && systemctl enable --now borgfleet-scheduler.service
for i in $(seq 1 "$WORKERS"); do systemctl enable "borgfleet-worker@$i.service"; done
systemctl enable --now borgfleet-workers.target
systemctl start borgfleet-workers.target
echo "BorgFleet installed: $WORKERS workers; web on http://$BIND"
