"""Unit tests of plugins/filter/backups.py (pure inventory logic of the roles)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.borgfleet.backup.plugins.filter import backups as f  # noqa: E402
from ansible_collections.borgfleet.backup.plugins.module_utils import contract  # noqa: E402

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0ZW1lYm9yZ2ZsZWV0dGVzdGtleWJvZHlBQUFB borgfleet@web1"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtoZXJrZXlib3JnZmxlZXR0ZXN0a2V5Ym9keUJC borgfleet@web2"


def inventory(**client_vars):
    web1 = {"borgfleet_backups": [
        {"name": "etc", "paths": ["/etc"], "passphrase": "s3cret",
         "retention": {"daily": 7, "weekly": 4}},
        {"name": "www", "paths": ["/srv/www"], "passphrase": "s3cret", "pool": "fast",
         "exclude": ["*.tmp"], "append_only": True},
    ]}
    web1.update(client_vars)
    return {
        "bk1": {"borgfleet_storage_pools": [{"name": "main", "path": "/srv/borg/"},
                                            {"name": "fast", "path": "/ssd/borg"}],
                "ansible_host": "127.0.0.3", "ansible_port": 2222},
        "bk2": {"borgfleet_storage_pools": [{"name": "main", "path": "/data/borg"}],
                "borgfleet_server_user": "borg2", "borgfleet_server_ssh_host": "backup2.example.org"},
        "web1": web1,
        "web2": {"borgfleet_backup_server": "bk2", "borgfleet_client_public_key": KEY2,
                 "borgfleet_backups": [{"name": "etc", "paths": ["/etc"], "passcommand": "cat /root/p"}]},
        "laptop": {"borgfleet_backup_server": "local",
                   "borgfleet_backups": [{"name": "home", "paths": ["/home"], "encryption": "none"}]},
    }


def resolve(hv, client="web1", **kw):
    return f.resolve_backups(hv[client].get("borgfleet_backups"), client, hv, ["bk1", "bk2"], **kw)


def test_resolve_defaults_to_first_server_and_first_pool():
    etc, www = resolve(inventory())
    assert etc["server"] == "bk1"
    assert etc["repository"] == "ssh://borg@127.0.0.3:2222/srv/borg/web1/etc"
    assert etc["repository_path"] == "/srv/borg/web1/etc"
    assert etc["client_dir"] == "/srv/borg/web1"
    assert etc["archive_name"] == "etc-{now:%Y-%m-%dT%H:%M:%S}"
    assert etc["match_archives"] == "etc-*"
    assert etc["compression"] == "lz4"
    assert etc["encryption"] == "repokey-blake2"
    assert etc["exclude_caches"] is True and etc["one_file_system"] is True
    assert etc["append_only"] is False
    assert etc["retention"] == {"daily": 7, "weekly": 4}
    assert etc["passphrase"] == "s3cret" and etc["passcommand"] is None
    assert etc["server_endpoint"] == {"host": "127.0.0.3", "port": 2222, "known_hosts_name": "[127.0.0.3]:2222"}
    assert www["pool"] == {"name": "fast", "path": "/ssd/borg"}
    assert www["repository"] == "ssh://borg@127.0.0.3:2222/ssd/borg/web1/www"
    assert www["exclude"] == ["*.tmp"]
    assert www["append_only"] is True
    assert www["retention"] is None


def test_resolve_explicit_server_user_and_ssh_host():
    (etc,) = resolve(inventory(), client="web2")
    assert etc["repository"] == "ssh://borg2@backup2.example.org:22/data/borg/web2/etc"
    assert etc["server_endpoint"]["known_hosts_name"] == "backup2.example.org"
    assert etc["passcommand"] == "cat /root/p" and etc["passphrase"] is None


def test_resolve_local_server():
    (home,) = resolve(inventory(), client="laptop", local_pool_path="/var/tmp/repos/")
    assert home["local"] is True and home["server"] == "local"
    assert home["repository"] == "/var/tmp/repos/laptop/home"
    assert home["client_dir"] == "/var/tmp/repos/laptop"
    assert "server_endpoint" not in home


def test_ipv6_server_address_is_bracketed():
    hv = inventory()
    hv["bk1"]["ansible_host"] = "::1"
    assert resolve(hv)[0]["repository"] == "ssh://borg@[::1]:2222/srv/borg/web1/etc"


def test_limit_selects_one_backup():
    assert [b["name"] for b in resolve(inventory(), limit="www")] == ["www"]
    assert [b["name"] for b in resolve(inventory(), limit="")] == ["etc", "www"]


def test_limit_naming_no_backup_lists_known_names():
    with pytest.raises(AnsibleFilterError, match=r"no backup named 'nope'.*etc, www"):
        resolve(inventory(), limit="nope")


@pytest.mark.parametrize("name", ["x;touch /tmp/pwned", "-rf", ".hidden", "", "a" * 65, "a/b", "a b", "é"])
def test_bad_backup_names_refused_naming_the_backup(name):
    hv = inventory(borgfleet_backups=[{"name": name, "paths": ["/etc"], "passphrase": "p"}])
    with pytest.raises(AnsibleFilterError, match="invalid backup name") as err:
        resolve(hv)
    assert repr(name) in str(err.value)


def test_longest_valid_name_accepted():
    hv = inventory(borgfleet_backups=[{"name": "A" + "b.-_" * 15 + "xyz", "paths": ["/etc"], "passphrase": "p"}])
    assert len(resolve(hv)[0]["name"]) == 64


def test_duplicate_backup_names_refused():
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "p"},
                                      {"name": "etc", "paths": ["/root"], "passphrase": "p"}])
    with pytest.raises(AnsibleFilterError, match="duplicate backup name 'etc'"):
        resolve(hv)


def test_unknown_pool_lists_pools():
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "p", "pool": "slow"}])
    with pytest.raises(AnsibleFilterError, match=r"unknown pool 'slow' on backup server 'bk1' \(pools: main, fast\)"):
        resolve(hv)


def test_unknown_server_refused():
    hv = inventory(borgfleet_backup_server="bk9")
    with pytest.raises(AnsibleFilterError, match="'bk9' is not a host of group backup_servers"):
        resolve(hv)


def test_no_backup_server_at_all():
    hv = inventory()
    with pytest.raises(AnsibleFilterError, match="no backup server"):
        f.resolve_backups(hv["web1"]["borgfleet_backups"], "web1", hv, [])


def test_typo_in_backup_key_refused():
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "p", "exlude": ["x"]}])
    with pytest.raises(AnsibleFilterError, match="unknown key.*exlude"):
        resolve(hv)


def test_secret_required_unless_unencrypted():
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"]}])
    with pytest.raises(AnsibleFilterError, match="set passphrase or passcommand"):
        resolve(hv)
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "a", "passcommand": "b"}])
    with pytest.raises(AnsibleFilterError, match="not both"):
        resolve(hv)


@pytest.mark.parametrize("paths", [None, [], "/etc", [""]])
def test_paths_required_as_list(paths):
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": paths, "passphrase": "p"}])
    with pytest.raises(AnsibleFilterError, match="paths"):
        resolve(hv)


@pytest.mark.parametrize("retention,msg", [
    ({"dayly": 7}, "unknown retention key"),
    ({"daily": -1}, "non-negative integer"),
    ({"daily": "seven"}, "non-negative integer"),
    ({"within": "2 days"}, "retention.within"),
    ({"daily": 0}, "keeps nothing"),
])
def test_bad_retention_refused(retention, msg):
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "p", "retention": retention}])
    with pytest.raises(AnsibleFilterError, match=msg):
        resolve(hv)


def test_retention_within_and_string_counts():
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "p",
                                       "retention": {"within": "2d", "hourly": "24", "yearly": 0}}])
    assert resolve(hv)[0]["retention"] == {"within": "2d", "hourly": 24}


@pytest.mark.parametrize("path", ["relative/borg", "/srv/my borg", '/srv/"x', "/srv/$(id)", "/", "/srv/../etc"])
def test_unsafe_pool_paths_refused(path):
    hv = inventory()
    hv["bk1"]["borgfleet_storage_pools"] = [{"name": "main", "path": path}]
    with pytest.raises(AnsibleFilterError, match="pool"):
        resolve(hv)


def test_server_without_pools_refused():
    hv = inventory()
    hv["bk1"]["borgfleet_storage_pools"] = []
    with pytest.raises(AnsibleFilterError, match="has no borgfleet_storage_pools"):
        resolve(hv)


def test_public_backups_drop_secrets():
    public = f.public_backups(resolve(inventory()))
    assert [b["name"] for b in public] == ["etc", "www"]
    assert all("passphrase" not in b and "passcommand" not in b for b in public)
    assert public[0]["repository"] == "ssh://borg@127.0.0.3:2222/srv/borg/web1/etc"


@pytest.mark.parametrize("key", [KEY, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
                                 "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAA= a@b"])
def test_valid_public_keys(key):
    assert f.validate_public_key("  %s\n" % key) == key


@pytest.mark.parametrize("key,msg", [
    ('command="sh" ' + KEY, "key type"),
    ("restrict " + KEY, "key type"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP8=", "key type"),
    (KEY + "\n" + KEY2, "single line"),
    ("ssh-ed25519", "base64"),
    ("ssh-ed25519 not_base64!", "base64"),
    (KEY + ' x" y', "comment"),
    ("", "empty"),
])
def test_invalid_public_keys(key, msg):
    with pytest.raises(AnsibleFilterError, match=msg):
        f.validate_public_key(key, "client 'web1'")


def test_server_clients_and_authorized_keys_lines():
    hv = inventory(borgfleet_client_public_key=KEY)
    bk1 = f.server_clients(hv, ["web1", "web2", "laptop"], "bk1", ["bk1", "bk2"])
    assert [c["client"] for c in bk1] == ["web1"]
    web1 = bk1[0]
    assert web1["client_dirs"] == ["/srv/borg/web1", "/ssd/borg/web1"]
    assert web1["repositories"] == [
        {"name": "etc", "path": "/srv/borg/web1/etc", "append_only": False},
        {"name": "www", "path": "/ssd/borg/web1/www", "append_only": True},
    ]
    assert f.authorized_keys_line(web1) == (
        'command="borg serve --restrict-to-path /srv/borg/web1 --restrict-to-path /ssd/borg/web1",restrict '
        + KEY)
    bk2 = f.server_clients(hv, ["web1", "web2", "laptop"], "bk2", ["bk1", "bk2"])
    assert [(c["client"], c["public_key"]) for c in bk2] == [("web2", KEY2)]


def test_server_clients_reuses_key_already_on_server():
    hv = inventory()  # web1 published no key in this run
    existing = "# managed\n%sweb1\n%s\n" % (
        f.AUTHORIZED_KEYS_MARKER, 'command="borg serve --restrict-to-path /srv/borg/web1",restrict ' + KEY)
    (web1,) = f.server_clients(hv, ["web1"], "bk1", ["bk1", "bk2"], existing)
    assert web1["public_key"] == KEY


def test_server_clients_without_key_fails_clearly():
    with pytest.raises(AnsibleFilterError, match="no public key for client 'web1'"):
        f.server_clients(inventory(), ["web1"], "bk1", ["bk1", "bk2"])


def test_server_clients_refuses_key_with_options():
    hv = inventory(borgfleet_client_public_key='command="/bin/sh" ' + KEY)
    with pytest.raises(AnsibleFilterError, match="client 'web1'.*key type"):
        f.server_clients(hv, ["web1"], "bk1", ["bk1", "bk2"])


def test_result_report_keeps_figures_and_drops_secrets():
    items = f.resolve_backups(inventory()["web1"]["borgfleet_backups"], "web1", inventory(), ["bk1"])
    registered = {"results": [
        {"item": items[0], "changed": True, "archive": {"name": "etc-2026", "stats": {"nfiles": 3}},
         "passphrase": "leak?"},
        {"item": items[1], "failed": True, "msg": "wrong passphrase", "rc": 2, "error_kind": "wrong_passphrase"},
    ]}
    report = f.result_report(registered, ["archive", "passphrase"])
    assert report[0] == {"backup": "etc", "client": "web1", "repository": items[0]["repository"],
                         "failed": False, "skipped": False, "changed": True,
                         "archive": {"name": "etc-2026", "stats": {"nfiles": 3}}}
    assert report[1]["failed"] is True and report[1]["msg"] == "wrong passphrase"
    assert report[1]["error_kind"] == "wrong_passphrase"
    assert "s3cret" not in repr(report) and "leak?" not in repr(report)


def test_known_hosts_name():
    assert f.known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert f.known_hosts_name("10.0.0.1", "2222") == "[10.0.0.1]:2222"


def test_resolve_backups_fails_with_the_contracts_plain_message():
    hv = inventory()
    assert [b["name"] for b in resolve(hv)] == ["etc", "www"]
    with pytest.raises(AnsibleFilterError) as err:
        resolve(hv, limit="nope")
    assert err.value.message == "client 'web1' has no backup named 'nope' (borgfleet_backup); its backups: etc, www"


def test_limit_missing_skip_gives_nothing_to_do():
    hv = inventory()
    assert resolve(hv, limit="nope", limit_missing="skip") == []


def test_limit_across_the_hosts_of_a_run():
    hv = inventory()
    backups = {host: hv[host]["borgfleet_backups"] for host in ("web1", "web2", "laptop")}
    contract.check_limit("", {"web1": backups["web1"]})
    contract.check_limit("www", {h: backups[h] for h in ("web2", "web1")})
    with pytest.raises(contract.ContractError) as err:
        contract.check_limit("www", {h: backups[h] for h in ("web2", "laptop")})
    assert str(err.value) == ("no host of this run has a backup named 'www' (borgfleet_backup); "
                              "backups: web2: etc; laptop: home")
    with pytest.raises(contract.ContractError, match="backups: web2: none"):
        contract.check_limit("www", {"web2": None})


def test_server_clients_names_a_client_it_cannot_authorise():
    (entry,) = f.server_clients(inventory(borgfleet_client_public_key=KEY), ["web1"], "bk1", ["bk1"])
    assert entry["problem"] == ""
    (entry,) = f.server_clients(inventory(), ["web1"], "bk1", ["bk1"], strict=False)
    assert entry["problem"].startswith("backup server 'bk1': no public key for client 'web1'")
    with pytest.raises(AnsibleFilterError) as err:
        f.server_clients(inventory(), ["web1"], "bk1", ["bk1"])
    assert err.value.message == entry["problem"]


def test_keys_for_other_parts_are_passed_on_but_databases_kept_private():
    dbs = [{"engine": "mariadb", "login_password": "dbsecret"}]
    hv = inventory(borgfleet_backups=[{"name": "db", "passphrase": "p",
                                       "databases": dbs, "snapshot": {"type": "btrfs"},
                                       "timezone": "Europe/Paris", "enabled": False}])
    (db,) = resolve(hv)
    # databases are validated (tests/databases/test_filter_databases.py), method defaults to auto
    assert db["databases"] == [dict(dbs[0], method="auto")] and db["snapshot"] == {"type": "btrfs"}
    assert db["timezone"] == "Europe/Paris" and db["enabled"] is False and db["description"] is None
    (public,) = f.public_backups([db])
    assert "databases" not in public and "dbsecret" not in repr(public)
    assert public["snapshot"] == {"type": "btrfs"}


# --- rules added with module_utils/contract.py (issue 10): the filter is a thin adapter over it ---

@pytest.mark.parametrize("retention", [{"within": "30S"}, {}, {"daily": 0, "weekly": "0"}])
def test_retention_that_would_break_every_prune_is_refused(retention):
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "p", "retention": retention}])
    with pytest.raises(AnsibleFilterError, match=r"retention\.within must look like|retention keeps nothing"):
        resolve(hv)


@pytest.mark.parametrize("pools, inner, outer", [
    ([{"name": "main", "path": "/srv/borg"}, {"name": "web1", "path": "/srv/borg/web1"}], "web1", "main"),
    ([{"name": "main", "path": "/srv/borg"}, {"name": "all", "path": "/srv"}], "main", "all"),
    ([{"name": "main", "path": "/srv/borg/"}, {"name": "again", "path": "/srv/borg"}], "again", "main"),
])
def test_nested_pools_are_refused(pools, inner, outer):
    """A pool inside another (or inside a client's directory of it): the forced command
    --restrict-to-path <pool>/<client> of one client would cover another client's repositories."""
    hv = inventory()
    hv["bk1"]["borgfleet_storage_pools"] = pools
    with pytest.raises(AnsibleFilterError, match=r"backup server 'bk1': pool '%s' \(.*\) is inside pool '%s'"
                       % (inner, outer)):
        resolve(hv)
    with pytest.raises(AnsibleFilterError, match="is inside pool"):
        f.server_settings("bk1", hv["bk1"])


def test_sibling_pools_with_a_common_prefix_are_not_nested():
    hv = inventory()
    hv["bk1"]["borgfleet_storage_pools"] = [{"name": "main", "path": "/srv/borg"}, {"name": "two", "path": "/srv/borg2"}]
    assert [p["path"] for p in f.server_settings("bk1", hv["bk1"])["pools"]] == ["/srv/borg", "/srv/borg2"]


def test_pool_holding_the_borg_users_home_is_refused():
    hv = inventory()
    hv["bk1"]["borgfleet_storage_pools"] = [{"name": "main", "path": "/var/lib"}]
    with pytest.raises(AnsibleFilterError, match="holds the home of the borg user"):
        f.server_settings("bk1", hv["bk1"])


@pytest.mark.parametrize("host", ["-f/etc/shadow", "-oProxyCommand=id", "a b", "host;id", "999.1.1.1", "fe80::1%eth0",
                                  "::g", ""])
def test_ssh_hosts_that_are_not_hosts_are_refused(host):
    """borgfleet_server_ssh_host reaches ssh-keyscan and ssh: never an option, never two words."""
    hv = inventory()
    hv["bk2"]["borgfleet_server_ssh_host"] = host
    if host == "":
        hv["bk2"]["ansible_host"] = "-x"   # an empty setting falls back to ansible_host: checked too
    with pytest.raises(AnsibleFilterError, match=r"backup server .bk2.: ssh host .* (is not|has an IPv6 zone)"):
        f.server_settings("bk2", hv["bk2"])


@pytest.mark.parametrize("host, url_host, known", [
    ("backup_2.example.org", "backup_2.example.org", "backup_2.example.org"),
    ("192.0.2.10", "192.0.2.10", "192.0.2.10"),
    ("2001:db8::10", "[2001:db8::10]", "2001:db8::10"),
    ("[2001:db8::10]", "[2001:db8::10]", "2001:db8::10"),   # brackets typed: ssh and known_hosts get none
])
def test_ssh_hosts_accepted_and_how_they_are_written(host, url_host, known):
    hv = inventory()
    hv["bk2"]["borgfleet_server_ssh_host"] = host
    (etc,) = resolve(hv, client="web2")
    assert etc["repository"] == "ssh://borg2@%s:22/data/borg/web2/etc" % url_host
    assert etc["server_endpoint"]["host"] == known and etc["server_endpoint"]["known_hosts_name"] == known


@pytest.mark.parametrize("compression, ok", [("lz4", True), ("zstd,22", True), ("auto,zlib,9", True), ("none", True),
                                             ("zstd,0", False), ("lz4 --x", False), ("auto", False), ("", True)])
def test_compression_specs(compression, ok):
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": ["/etc"], "passphrase": "p", "compression": compression}])
    if ok:
        assert resolve(hv)[0]["compression"] == (compression or "lz4")
    else:
        with pytest.raises(AnsibleFilterError, match="is not a borg compression spec"):
            resolve(hv)


@pytest.mark.parametrize("paths, exclude, msg", [
    (["etc"], [], "paths must be absolute"),
    (["/etc\n/root"], [], "paths must be absolute"),
    (["/etc"], ["re:[unclosed"], "not a valid regular expression"),
    (["/etc"], ["x\ny"], "exclude must list borg patterns"),
])
def test_paths_and_excludes(paths, exclude, msg):
    hv = inventory(borgfleet_backups=[{"name": "etc", "paths": paths, "exclude": exclude, "passphrase": "p"}])
    with pytest.raises(AnsibleFilterError, match=msg):
        resolve(hv)
