"""The storage decisions of module_utils/facts.py on a GIVEN, parsed `lvs` report (pure logic).

device-mapper is absent on this kernel, so `lvs` here reports nothing: the volumes below are handed
to the prober as if lvs had reported them. The real `lvs` path, on real logical volumes, is tested
in the lab VM (tests/lab/test_lvm_snapshot.py: server_facts on the engines' LVs)."""
import os
import shutil

from ansible_collections.borgfleet.backup.plugins.module_utils import facts, probes

MIB = 1024 * 1024


def prober_given_lvs_report(tmp_path, vg_free_bytes, vg_free_extents, tools=("du", "lvcreate")):
    """A prober whose mount table and parsed lvs report are given, with a probe PATH holding only
    `tools` (the real binaries, linked)."""
    path = tmp_path / ("tools-%s-%d" % ("-".join(tools), vg_free_extents))
    path.mkdir()
    for name in tools:
        assert shutil.which(name), f"{name} is not installed (make setup installs lvm2)"
        os.symlink(shutil.which(name), path / name)
    prober = facts.StorageProber(probes.Probe(path=str(path), timeout=5), size_timeout=30)
    prober.storage.mounts = [{"device_number": "254:3", "root": "/", "mountpoint": str(tmp_path),
                      "fstype": "ext4", "source": "/dev/mapper/vg0-db"}]
    prober.storage._lvs = ([{"lv": "db", "vg": "vg0", "path": "/dev/vg0/db", "dm_path": "/dev/mapper/vg0-db",
                             "size_bytes": 10 * 1024 * MIB, "attr": "-wi-ao----", "vg_free_bytes": vg_free_bytes,
                             "vg_extent_bytes": 4 * MIB, "vg_free_extents": vg_free_extents}], None)
    return prober


def datadir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ibdata1").write_bytes(b"x" * 1024 * 1024)
    return str(tmp_path / "data")


def test_given_lvs_report_a_vg_with_room_takes_a_snapshot(tmp_path):
    st = prober_given_lvs_report(tmp_path, 300 * MIB, 75).describe(datadir(tmp_path))
    assert st["type"] == "lvm" and st["lvm"]["vg"] == "vg0" and st["lvm"]["lv"] == "db"
    assert st["snapshot_fits"] == {"conservative": True, "aggressive": True}
    assert st["snapshot_capable"] is True and "reason" not in st


def test_given_lvs_report_without_lvcreate_no_snapshot(tmp_path):
    st = prober_given_lvs_report(tmp_path, 300 * MIB, 75, tools=("du",)).describe(datadir(tmp_path))
    assert st["type"] == "lvm" and st["snapshot_capable"] is False and st["reason"] == "lvcreate not found"


def test_given_lvs_report_a_vg_without_room_no_snapshot(tmp_path):
    st = prober_given_lvs_report(tmp_path, 32 * MIB, 8).describe(str(tmp_path))
    assert st["type"] == "lvm" and st["snapshot_capable"] is False
    assert st["snapshot_fits"] == {"conservative": False, "aggressive": False}
    assert "less than the aggressive snapshot size" in st["reason"]
    st = prober_given_lvs_report(tmp_path, 0, 0).describe(str(tmp_path))
    assert st["snapshot_capable"] is False and st["reason"].startswith("volume group vg0 has 0 bytes free")
