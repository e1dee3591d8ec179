#!/usr/bin/env bash
# Start MariaDB, Redis and PostgreSQL when they are down. On this machine kind they run as services,
# but without systemd nothing restarts them; the commands are the machine's own.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port name
  for _ in $(seq 1 60); do
    port_open "$1" && { echo "$2 is up on 127.0.0.1:$1"; return 0; }
    sleep 0.5
  done
  echo "ERROR: $2 did not come up on 127.0.0.1:$1" >&2
  return 1
}

if port_open 3306; then
  echo "mariadb already up"
elif [ -x /usr/sbin/mariadbd ]; then
  install -d -o mysql -g mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port 3306 mariadb
else
  echo "WARNING: mariadb is not installed; tests that need it will fail" >&2
fi

if port_open 6379; then
  echo "redis already up"
elif command -v redis-server >/dev/null; then
  install -d /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 redis
else
  echo "WARNING: redis is not installed; tests that need it will fail" >&2
fi

# PostgreSQL: the tests start clusters of their own with /usr/lib/postgresql/15/bin; the packaged
# cluster only needs to be up for the facts tests that detect a running server.
if port_open 5432; then
  echo "postgresql already up"
elif command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q .; then
  pg_lsclusters -h | while read -r ver cluster _; do pg_ctlcluster "$ver" "$cluster" start || true; done
  wait_port 5432 postgresql
else
  echo "WARNING: postgresql is not installed; tests that need it will fail" >&2
fi
