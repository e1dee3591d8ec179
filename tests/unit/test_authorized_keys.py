"""module_utils/authorized_keys.py: grant lines, their records, setup keeping live grants and dropping
expired ones, and concurrent edits under the lock (real processes, real flock, real ssh-keygen)."""
import multiprocessing
import subprocess
import time

import pytest

from plugins.module_utils import authorized_keys as ak
ContractError = ak.ContractError  # the class the module raises (imported through ansible_collections)
from tests.lib.sshd import keygen

NOW = time.time()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return {name: keygen(d / name, comment=f"borgfleet@{name}") for name in ("web1", "web2", "web3", "clone")}


def clients(keys, *names):
    return [{"client": n, "public_key": keys[n], "client_dirs": [f"/srv/borg/{n}"]} for n in names]


def sshd_reads(tmp):
    subprocess.run(["ssh-keygen", "-l", "-f", tmp], check=True, capture_output=True)


def grant(client, key, path, hours=1):
    return {"client": client, "public_key": key, "paths": [path], "hours": hours}


def test_grant_line_sits_above_the_clients_line_with_both_directories(tmp_path, keys):
    path = str(tmp_path / "authorized_keys")
    ak.edit(path, clients=clients(keys, "web1", "web2"), validate=sshd_reads, now_epoch=NOW)
    out = ak.edit(path, grant=grant("web2", keys["web2"], "/srv/borg/web1/etc"), validate=sshd_reads, now_epoch=NOW)
    assert out["changed"] and len(out["grant_id"]) == 16 and out["expires"] == ak.utc(NOW + 3600)
    lines = open(path).read().splitlines()
    i = lines.index("# borgfleet client: web2")
    assert lines[i - 2] == "# borgfleet grant: web2 %s %s /srv/borg/web1/etc" % (out["grant_id"], out["expires"])
    assert lines[i - 1] == ('command="borg serve --restrict-to-path /srv/borg/web2 --restrict-to-path '
                            '/srv/borg/web1/etc",restrict,expiry-time="%s" %s' % (out["expires"], keys["web2"]))
    assert lines[i + 1] == 'command="borg serve --restrict-to-path /srv/borg/web2",restrict ' + keys["web2"]
    assert out["grants"] == [{"client": "web2", "id": out["grant_id"], "expires": out["expires"],
                              "path": "/srv/borg/web1/etc"}]
    # The filter still reads each client's own line only.
    from plugins.filter.backups import parse_authorized_entries
    assert parse_authorized_entries(open(path).read())["web2"]["client_dirs"] == ["/srv/borg/web2"]
    # Revoked: back to the setup file; revoking again changes nothing.
    assert ak.edit(path, revoke=out["grant_id"], validate=sshd_reads, now_epoch=NOW)["changed"]
    assert open(path).read() == ak.clients_text(clients(keys, "web1", "web2"))
    assert not ak.edit(path, revoke=out["grant_id"], validate=sshd_reads, now_epoch=NOW)["changed"]


def test_two_grants_of_one_client_share_its_line_and_a_host_without_a_line_gets_its_own(tmp_path, keys):
    path = str(tmp_path / "authorized_keys")
    ak.edit(path, clients=clients(keys, "web1", "web2", "web3"), now_epoch=NOW)
    a = ak.edit(path, grant=grant("web3", keys["web3"], "/srv/borg/web1/etc", hours=1), now_epoch=NOW)
    b = ak.edit(path, grant=grant("web3", keys["web3"], "/srv/borg/web2/home", hours=2), now_epoch=NOW)
    text = open(path).read()
    assert text.count(keys["web3"]) == 2  # one grant line (latest expiry) + its own line
    assert ('--restrict-to-path /srv/borg/web3 --restrict-to-path /srv/borg/web1/etc --restrict-to-path '
            '/srv/borg/web2/home",restrict,expiry-time="%s"' % b["expires"]) in text
    ak.edit(path, revoke=a["grant_id"], now_epoch=NOW)
    assert "/srv/borg/web1/etc" not in open(path).read() and "/srv/borg/web2/home" in open(path).read()
    # A recovery host that is no client of this server: a line with the repository alone.
    ak.edit(path, revoke=b["grant_id"], now_epoch=NOW)
    spare = keys["clone"]
    g = ak.edit(path, grant=grant("spare1", spare, "/srv/borg/web1/etc"), now_epoch=NOW)
    assert open(path).read().endswith('command="borg serve --restrict-to-path /srv/borg/web1/etc",restrict,'
                                      'expiry-time="%s" %s\n' % (g["expires"], spare))


def test_setup_keeps_live_grants_and_drops_expired_ones(tmp_path, keys):
    path = str(tmp_path / "authorized_keys")
    ak.edit(path, clients=clients(keys, "web1", "web2"), now_epoch=NOW)
    live = ak.edit(path, grant=grant("web2", keys["web2"], "/srv/borg/web1/etc", hours=2), now_epoch=NOW)
    ak.edit(path, grant=grant("web1", keys["web1"], "/srv/borg/web2/home", hours=1), now_epoch=NOW)
    # Setup 90 minutes later, with a new pool for web2: the live grant follows web2's new directories.
    later = NOW + 5400
    entries = clients(keys, "web1", "web2")
    entries[1]["client_dirs"].append("/srv/borg2/web2")
    out = ak.edit(path, clients=entries, validate=sshd_reads, now_epoch=later)
    assert out["changed"] and [g["id"] for g in out["grants"]] == [live["grant_id"]]
    text = open(path).read()
    assert "/srv/borg/web2/home" not in text
    assert ('--restrict-to-path /srv/borg/web2 --restrict-to-path /srv/borg2/web2 --restrict-to-path '
            '/srv/borg/web1/etc",restrict,expiry-time') in text
    # The same setup again changes nothing; in check mode neither.
    assert not ak.edit(path, clients=entries, now_epoch=later)["changed"]
    assert not ak.edit(path, clients=entries, check_mode=True, now_epoch=later)["changed"]
    # Once that one has expired too, setup gives back exactly the clients' file.
    ak.edit(path, clients=entries, now_epoch=NOW + 7201)
    assert open(path).read() == ak.clients_text(entries)


def test_refused_grants(tmp_path, keys):
    path = str(tmp_path / "authorized_keys")
    ak.edit(path, clients=clients(keys, "web1", "web2"), now_epoch=NOW)
    before = open(path).read()
    cases = [
        (grant("web3", keys["web1"], "/srv/borg/web2/home"), "is the key of client 'web1'"),
        (grant("web2", keys["web2"], '/srv/borg/web1/etc" ,x'), "repository path"),
        (grant("web2", keys["web2"], "/srv/borg/web1/../web3"), "repository path"),
        (grant("web2", 'no-pty ' + keys["web2"], "/srv/borg/web1/etc"), "must start with a key type"),
        (grant("web2", keys["web2"], "/srv/borg/web1/etc", hours=1000), "hours"),
        (grant("we b2", keys["web2"], "/srv/borg/web1/etc"), "invalid client name"),
    ]
    for bad, message in cases:
        with pytest.raises(ContractError, match=message):
            ak.edit(path, grant=bad, now_epoch=NOW)
    ak.edit(path, grant=grant("web3", keys["web3"], "/srv/borg/web1/etc"), now_epoch=NOW)
    with pytest.raises(ContractError, match="holds a grant of client 'web3'"):
        ak.edit(path, grant=grant("web4", keys["web3"], "/srv/borg/web1/etc"), now_epoch=NOW)
    with pytest.raises(ContractError, match="holds a grant with another key"):
        ak.edit(path, grant=grant("web3", keys["clone"], "/srv/borg/web1/etc"), now_epoch=NOW)
    assert len(ak.split(open(path).read())[1]) == 1 and open(path).read() != before


def test_hand_edited_grants_are_never_carried_over(keys):
    key = keys["web2"]
    good = ('# borgfleet grant: web2 0123456789abcdef 20990101000000Z /srv/borg/web1/etc\n'
            'command="borg serve --restrict-to-path /srv/borg/web1/etc",restrict,expiry-time="20990101000000Z" '
            + key + "\n")
    assert len(ak.split(good)[1]) == 1
    for bad in (good.replace("/srv/borg/web1/etc\n", '/x",no-restrict\n'),      # a record smuggling options
                good.replace(" /srv/borg/web1/etc\n", " /srv/borg/web3/data\n"),  # a record its line does not hold
                good.replace(",restrict,", ","),                                 # a line without restrict
                good.replace("0123456789abcdef", "xyz")):
        lines, grants = ak.split(bad)
        assert grants == [] and not any("borg serve" in line for line in lines), bad


def _grant_and_maybe_revoke(args):
    path, n, key = args
    out = ak.edit(path, grant=grant("web2", key, "/srv/borg/src%02d/etc" % n), validate=sshd_reads)
    if n % 2:
        ak.edit(path, revoke=out["grant_id"], validate=sshd_reads)
    return n


def test_concurrent_grants_and_revocations_lose_nothing(tmp_path, keys):
    """Sixteen processes grant (and half of them revoke) at once on one file: every grant that was
    not revoked is in the end, each exactly once, and the file is one sshd reads."""
    path = str(tmp_path / "authorized_keys")
    ak.edit(path, clients=clients(keys, "web1", "web2"))
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.map(_grant_and_maybe_revoke, [(path, n, keys["web2"]) for n in range(16)])
    text = open(path).read()
    sshd_reads(path)
    lines, grants = ak.split(text)
    assert sorted(g["path"] for g in grants) == ["/srv/borg/src%02d/etc" % n for n in range(0, 16, 2)]
    (line,) = [x for x in text.splitlines() if "expiry-time" in x]
    assert line.count("--restrict-to-path") == 1 + 8
