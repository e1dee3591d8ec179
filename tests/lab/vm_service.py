"""Run INSIDE the lab VM as the service account (copied there by tests/lab/test_workers_systemd.py):
requests to the service's app, with the settings of /etc/borgfleet/borgfleet.env, as the web unit
serves them.

    vm_service.py token          an admin user and an API token for it; prints the token
    vm_service.py METHOD PATH    one request, with the token read from stdin; prints
                                 {"status", "json", "text", "location"} as JSON
"""
import json
import os
import secrets
import sys

ENV_FILE = "/etc/borgfleet/borgfleet.env"
# Beside the checkout's ui/, as the units' PYTHONPATH has it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui"))


def load_env():
    with open(ENV_FILE) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                os.environ.setdefault(key, value)


def main(argv):
    load_env()
    from borgfleet_ui import create_app, db as dbm
    from borgfleet_ui.auth import create_token, create_user
    from borgfleet_ui.config import load_config
    if argv == ["token"]:
        conn = dbm.connect(load_config())
        name = "lab-admin-" + secrets.token_hex(3)
        create_user(conn, name, "admin")
        uid = dbm.query(conn, "SELECT id FROM users WHERE username=%s", (name,), one=True)["id"]
        print(create_token(conn, uid, "lab"))
        conn.close()
        return
    method, path = argv
    token = sys.stdin.read().strip()
    resp = create_app().test_client().open(path, method=method, headers={"Authorization": "Bearer " + token})
    print(json.dumps({"status": resp.status_code, "json": resp.get_json(silent=True),
                      "text": resp.get_data(as_text=True), "location": resp.headers.get("Location")}))


if __name__ == "__main__":
    main(sys.argv[1:])
