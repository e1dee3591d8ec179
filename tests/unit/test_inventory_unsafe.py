"""plugins/inventory/fleet.py's unsafe(): wrap_var's result by exact type, for every shape the
database hands the inventory (and wrap_var itself for anything else)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible.utils.unsafe_proxy import AnsibleUnsafe, AnsibleUnsafeText, wrap_var  # noqa: E402
from ansible_collections.borgfleet.backup.plugins.inventory.fleet import unsafe  # noqa: E402


def shape(v):
    """A value with the type of every node spelled out, keys included."""
    if isinstance(v, dict):
        return ("dict", type(v).__name__, sorted((shape(k), shape(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple, set)):
        items = [shape(x) for x in v]
        return (type(v).__name__, sorted(items) if isinstance(v, set) else items)
    return (type(v).__name__, repr(v))


VALUE = {
    "ansible_host": "127.0.0.5", "ansible_port": 2222, "borgfleet_backups": [
        {"name": "etc", "paths": ["/etc", "{{ lookup('pipe', 'id') }}"], "exclude": [],
         "passphrase": "{% raw %}s3cret", "retention": {"daily": 7, "weekly": None}, "databases": [{"engine": "postgresql"}]},
    ],
    "flags": [True, False, 0, 1.5], "nested": {"a": {"b": ["c", ("d", "e")]}}, "raw": b"bytes", "set": {"x", "y"},
    "already": AnsibleUnsafeText("kept"),
}


def test_unsafe_equals_wrap_var_by_type():
    assert shape(unsafe(VALUE)) == shape(wrap_var(VALUE))
    assert unsafe(VALUE) == wrap_var(VALUE)


def test_every_string_and_key_is_unsafe():
    def strings(v):
        if isinstance(v, dict):
            for k, x in v.items():
                yield k
                yield from strings(x)
        elif isinstance(v, (list, tuple, set)):
            for x in v:
                yield from strings(x)
        elif isinstance(v, (str, bytes)):
            yield v
    found = list(strings(unsafe(VALUE)))
    assert len(found) > 20
    assert all(isinstance(s, AnsibleUnsafe) for s in found), [s for s in found if not isinstance(s, AnsibleUnsafe)]
    assert unsafe(None) is None and unsafe(7) == 7 and type(unsafe(True)) is bool
