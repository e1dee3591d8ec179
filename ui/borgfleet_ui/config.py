"""Settings from the environment, shared by the web app, workers, scheduler and CLI."""
import ipaddress
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config():
    env = os.environ.get
    return {
        "DB_HOST": env("BORGFLEET_DB_HOST", "127.0.0.1"),
        "DB_PORT": int(env("BORGFLEET_DB_PORT", "3306")),
        "DB_USER": env("BORGFLEET_DB_USER", "root"),
        "DB_PASSWORD": env("BORGFLEET_DB_PASSWORD", ""),
        "DB_NAME": env("BORGFLEET_DB_NAME", "borgfleet"),
        "REDIS_URL": env("BORGFLEET_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "SECRET_KEY": env("BORGFLEET_SECRET_KEY", ""),
        # Encrypts passphrases at rest (secret_store.py); kept outside the database, back it up apart.
        "SECRET_KEY_FILE": env("BORGFLEET_SECRET_KEY_FILE", "/etc/borgfleet/secret.key"),
        # The collection checkout whose playbooks the workers run (default: this repository).
        "COLLECTION_ROOT": env("BORGFLEET_COLLECTION_ROOT", _ROOT),
        # Private data dirs of ansible-runner runs; each run's dir is removed when it ends.
        "RUN_DIR": env("BORGFLEET_RUN_DIR", os.path.join(_ROOT, "ui", "instance", "runs")),
        "SYSTEMD": env("BORGFLEET_SYSTEMD", "auto"),
        # Index each new archive after its backup (the index_archive follow-up; fleet/archive_index.py).
        # Off: archives are indexed on their first browse only.
        "INDEX_AFTER_BACKUP": env("BORGFLEET_INDEX_AFTER_BACKUP", "1") != "0",
        # Client timeouts (seconds). A dead server or network must fail a call, never hang it.
        "DB_CONNECT_TIMEOUT": float(env("BORGFLEET_DB_CONNECT_TIMEOUT", "5")),
        # Our queries are small; a lock wait (innodb_lock_wait_timeout, 50 s) must still fit.
        "DB_READ_TIMEOUT": float(env("BORGFLEET_DB_READ_TIMEOUT", "120")),
        "DB_WRITE_TIMEOUT": float(env("BORGFLEET_DB_WRITE_TIMEOUT", "60")),
        # How long a statement keeps reconnecting while MariaDB restarts before the error is raised.
        "DB_RETRY_SECONDS": float(env("BORGFLEET_DB_RETRY_SECONDS", "60")),
        "REDIS_CONNECT_TIMEOUT": float(env("BORGFLEET_REDIS_CONNECT_TIMEOUT", "5")),
        # Above the scheduler's longest BLPOP (RENEW, 5 s); RQ's worker raises it for its own
        # blocking dequeue (rq.Worker._set_connection: worker_ttl - 15 + 10 s).
        "REDIS_SOCKET_TIMEOUT": float(env("BORGFLEET_REDIS_SOCKET_TIMEOUT", "30")),
        # How long a command keeps reconnecting while Redis restarts before the error is raised.
        "REDIS_RETRY_SECONDS": float(env("BORGFLEET_REDIS_RETRY_SECONDS", "30")),
    }


def db_params(cfg):
    return dict(host=cfg["DB_HOST"], port=cfg["DB_PORT"], user=cfg["DB_USER"],
                password=cfg["DB_PASSWORD"], database=cfg["DB_NAME"],
                connect_timeout=cfg.get("DB_CONNECT_TIMEOUT", 5), read_timeout=cfg.get("DB_READ_TIMEOUT", 120),
                write_timeout=cfg.get("DB_WRITE_TIMEOUT", 60))


def web_config():
    """Settings of the web app only: login, sessions, cookies, proxies (read by create_app)."""
    env = os.environ.get
    return {
        # A login session ends this many minutes after login (and at logout, password change, disable).
        "SESSION_MINUTES": int(env("BORGFLEET_SESSION_MINUTES", "480")),
        # Failed logins allowed per client address and per user name within the window; then 429.
        "LOGIN_MAX_FAILURES": int(env("BORGFLEET_LOGIN_MAX_FAILURES", "10")),
        "LOGIN_WINDOW_SECONDS": int(env("BORGFLEET_LOGIN_WINDOW_SECONDS", "900")),
        # Behind TLS: the session cookie is Secure and HSTS is sent (install.sh sets it).
        "SECURE_COOKIES": env("BORGFLEET_SECURE_COOKIES", "") == "1",
        # Reverse proxies in front whose X-Forwarded-For/-Proto are trusted (0: none, use the peer address).
        "TRUSTED_PROXIES": int(env("BORGFLEET_TRUSTED_PROXIES", "0")),
        # Addresses that may read /metrics without a token: comma-separated networks (CIDR); empty: token only.
        "METRICS_ALLOW": networks(env("BORGFLEET_METRICS_ALLOW", "")),
    }


def networks(text):
    """'10.0.0.0/8, ::1' -> ip_network objects; a malformed network stops the app at startup."""
    return tuple(ipaddress.ip_network(n.strip()) for n in text.split(",") if n.strip())
