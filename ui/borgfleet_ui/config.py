"""Settings from the environment, shared by the web app, workers, scheduler and CLI."""
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
    }


def db_params(cfg):
    return dict(host=cfg["DB_HOST"], port=cfg["DB_PORT"], user=cfg["DB_USER"],
                password=cfg["DB_PASSWORD"], database=cfg["DB_NAME"])
