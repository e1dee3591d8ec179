"""Pure logic of the backup server's authorized_keys (plugins/filter/backups.py, issue 10):
one key on one line at most, and one broken client never blocks the others."""
import subprocess

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.borgfleet.backup.plugins.filter import backups as f

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0ZW1lYm9yZ2ZsZWV0dGVzdGtleWJvZHlBQUFB borgfleet@a"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtoZXJrZXlib3JnZmxlZXR0ZXN0a2V5Ym9keUJC borgfleet@b"
CLIENTS = ["b1", "a1", "n1"]  # b1 is listed first: it would win a shared key in file order


def hostvars(**clients):
    hv = {"bk": {"borgfleet_storage_pools": [{"name": "main", "path": "/srv/borg"}]}}
    for name, extra in clients.items():
        hv[name] = dict({"borgfleet_backups": [{"name": "etc", "paths": ["/etc"], "passphrase": "p"}]}, **extra)
    return hv


def authorized(**keys):
    return "".join("%s%s\n%s\n" % (f.AUTHORIZED_KEYS_MARKER, client, f.authorized_keys_line(
        {"public_key": key, "client_dirs": ["/srv/borg/%s" % client]})) for client, key in keys.items())


def entries(hv, existing=""):
    return {e["client"]: e for e in f.server_clients(hv, list(hv)[1:], "bk", ["bk"], existing, strict=False)}


def test_a_cloned_key_stays_with_the_client_that_holds_it():
    hv = hostvars(b1={"borgfleet_client_public_key": KEY_A.replace("@a", "@b1")},  # same key, other comment
                  a1={"borgfleet_client_public_key": KEY_A})
    out = entries(hv, authorized(a1=KEY_A))
    assert out["a1"]["public_key"] == KEY_A and out["a1"]["problem"] == ""
    assert out["b1"]["public_key"] is None and out["b1"]["client_dirs"] == []
    msg = out["b1"]["problem"]
    assert "client 'b1' presents the same SSH public key" in msg and "as client 'a1'" in msg
    assert "'a1' keeps its access and 'b1' is not authorised" in msg
    with pytest.raises(AnsibleFilterError, match="client 'b1' presents the same SSH public key"):
        f.server_clients(hv, ["b1", "a1"], "bk", ["bk"], authorized(a1=KEY_A))


def test_a_key_new_to_the_server_on_two_clients_is_given_to_neither():
    hv = hostvars(b1={"borgfleet_client_public_key": KEY_A}, a1={"borgfleet_client_public_key": KEY_A},
                  n1={"borgfleet_client_public_key": KEY_B})
    out = entries(hv)
    assert [c for c, e in out.items() if e["public_key"]] == ["n1"]
    assert "none of them is authorised" in out["a1"]["problem"] and "as client 'b1'" in out["a1"]["problem"]


def test_a_key_held_by_a_client_absent_from_the_run_stays_its():
    hv = hostvars(b1={"borgfleet_client_public_key": KEY_A}, a1={})  # a1 not in this run: no fact
    out = entries(hv, authorized(a1=KEY_A))
    assert out["a1"]["public_key"] == KEY_A and out["b1"]["public_key"] is None
    lines = [f.authorized_keys_line(e) for e in out.values() if e["public_key"]]
    assert len(lines) == 1 and "/srv/borg/a1" in lines[0]


def test_a_client_that_cannot_be_set_up_keeps_its_line_and_blocks_nobody():
    hv = hostvars(b1={"borgfleet_backups": [{"name": "etc", "paths": ["/etc"], "passphrase": "p", "exlude": []}],
                      "borgfleet_client_public_key": KEY_B},
                  a1={"borgfleet_client_public_key": KEY_A},
                  n1={})  # new, unreachable: no key anywhere
    out = entries(hv, authorized(b1=KEY_B))
    assert out["a1"]["problem"] == "" and out["a1"]["repositories"]
    assert "exlude" in out["b1"]["problem"]
    assert out["b1"]["public_key"] == KEY_B and out["b1"]["client_dirs"] == ["/srv/borg/b1"]
    assert out["b1"]["repositories"] == []  # nothing to initialise for it
    assert "no public key for client 'n1'" in out["n1"]["problem"] and out["n1"]["public_key"] is None
    # Strict (the default), the same run fails naming every refused client and none other.
    with pytest.raises(AnsibleFilterError) as err:
        f.server_clients(hv, ["b1", "a1", "n1"], "bk", ["bk"], authorized(b1=KEY_B))
    assert "exlude" in err.value.message and "'n1'" in err.value.message and "'a1'" not in err.value.message


def test_an_invalid_published_key_keeps_the_line_already_there():
    hv = hostvars(a1={"borgfleet_client_public_key": 'command="/bin/sh" ' + KEY_B})
    out = entries(hv, authorized(a1=KEY_A))
    assert "key type" in out["a1"]["problem"] and out["a1"]["public_key"] == KEY_A


def test_a_kept_line_only_covers_the_clients_own_directories():
    line = 'command="borg serve --restrict-to-path /srv/borg/a1 --restrict-to-path /srv/borg",restrict ' + KEY_A
    existing = "%sa1\n%s\n" % (f.AUTHORIZED_KEYS_MARKER, line)
    out = entries(hostvars(a1={"borgfleet_backups": "not a list"}), existing)
    assert out["a1"]["client_dirs"] == ["/srv/borg/a1"]


@pytest.mark.parametrize("line", [
    'command="borg serve --restrict-to-path /srv/borg/a1",restrict,pty ' + KEY_A,
    'command="sh",restrict ' + KEY_A,
    KEY_A,
])
def test_hand_edited_lines_are_not_carried_over(line):
    assert f.parse_authorized_keys("%sa1\n%s\n" % (f.AUTHORIZED_KEYS_MARKER, line)) == {}


def test_a_server_problem_still_fails():
    with pytest.raises(AnsibleFilterError, match="no borgfleet_storage_pools"):
        f.server_clients({"bk": {}}, [], "bk", ["bk"], strict=False)


def test_fingerprint_is_the_one_ssh_keygen_shows(tmp_path):
    path = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "x", "-f", str(path)], check=True)
    pub = path.with_suffix(".pub")
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True).stdout
    assert f.key_fingerprint(f.validate_public_key(pub.read_text())) == shown.split()[1]


@pytest.mark.parametrize("key", [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0ZW1lYm9yZ2ZsZWV0dGVzdGtleWJvZHlBQUF",  # cut short: no decode
    "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHc0ZW1lYm9yZ2ZsZWV0dGVzdGtleWJvZHlBQUFB",  # an ed25519 body
])
def test_a_mangled_key_is_refused_for_its_client_alone(key):
    with pytest.raises(AnsibleFilterError, match="not a ssh-"):
        f.validate_public_key(key)
    hv = hostvars(b1={"borgfleet_client_public_key": key}, a1={"borgfleet_client_public_key": key},
                  n1={"borgfleet_client_public_key": KEY_B})
    out = entries(hv)
    assert "not a ssh-" in out["b1"]["problem"] and out["n1"]["public_key"] == KEY_B
