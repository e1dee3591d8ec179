"""Unit tests of plugins/module_utils/borg.py: argv building, environment, error classification.

Pure logic, with a recording runner; the failure classes produced for real by real borg are in
tests/module_utils/test_borg.py."""

import json
import re
import shlex

import pytest

from ansible_collections.borgfleet.backup.plugins.module_utils import borg as b

SECRET = 'pa55-Phrase-For-Tests'


class Recorder:
    """A runner that records argv/env and answers with canned output (pure logic only)."""

    def __init__(self, rc=0, out='{}', err=''):
        self.calls = []
        self.rc, self.out, self.err = rc, out, err

    def __call__(self, argv, env, cwd=None):
        self.calls.append((argv, env, cwd))
        return self.rc, self.out, self.err


def borg_with(recorder, **kw):
    settings = b.BorgSettings(kw.pop('repository', 'ssh://borg@backup1:2222/srv/borg/web1/etc'),
                              passphrase=kw.pop('passphrase', SECRET), **kw)
    return b.Borg(settings, runner=recorder)


def test_passphrase_only_in_environment_never_in_argv():
    rec = Recorder(out=json.dumps({'archive': {'name': 'etc-1', 'stats': {}}}))
    borg_with(rec).create('etc-1', ['/etc'])
    argv, env, _ = rec.calls[0]
    assert env['BORG_PASSPHRASE'] == SECRET
    assert not any(SECRET in a for a in argv)


def test_passcommand_goes_to_borg_passcommand():
    rec = Recorder(out='{"archives": []}')
    borg = b.Borg(b.BorgSettings('/r', passcommand='cat /root/.pass'), runner=rec)
    borg.list_archives()
    env = rec.calls[0][1]
    assert env['BORG_PASSCOMMAND'] == 'cat /root/.pass'
    assert 'BORG_PASSPHRASE' not in env


def test_create_argv_puts_user_data_after_double_dash():
    rec = Recorder(out=json.dumps({'archive': {'name': 'etc-1'}}))
    borg_with(rec).create('etc-1', ['/etc', '-rf'], exclude=['*.tmp'], exclude_caches=True,
                          one_file_system=True, compression='zstd,3', files_cache='ctime,size')
    argv = rec.calls[0][0]
    dashdash = argv.index('--')
    assert argv[dashdash + 1:] == ['ssh://borg@backup1:2222/srv/borg/web1/etc::etc-1', '/etc', '-rf']
    opts = argv[:dashdash]
    for flag in ('--exclude-caches', '--one-file-system', '--json', '--log-json'):
        assert flag in opts
    assert opts[opts.index('--compression') + 1] == 'zstd,3'
    assert opts[opts.index('--files-cache') + 1] == 'ctime,size'
    assert opts[opts.index('--lock-wait') + 1] == str(b.QUICK_LOCK_WAIT)  # a first, quick try (see borg.run)


def test_rsh_quotes_paths_and_pins_host_keys():
    s = b.BorgSettings('ssh://borg@h:22/x', ssh_key='/keys/my key', ssh_known_hosts='/kh/known hosts')
    parts = shlex.split(s.rsh())
    assert parts[parts.index('-i') + 1] == '/keys/my key'
    assert 'UserKnownHostsFile=/kh/known hosts' in parts
    assert 'StrictHostKeyChecking=yes' in parts
    assert 'BatchMode=yes' in parts
    loose = b.BorgSettings('ssh://borg@h:22/x', ssh_strict_host_key_checking=False)
    # Never "no": an unknown host is accepted once, a changed key still refused.
    assert 'StrictHostKeyChecking=accept-new' in shlex.split(loose.rsh())


@pytest.mark.parametrize('name', ['etc;touch /tmp/x', 'a b', '-rf', '$(id)', 'x::y', '', 'a/b', '`id`', 'a\nb'])
def test_archive_names_with_metacharacters_are_refused(name):
    with pytest.raises(b.BorgError) as e:
        b.validate_archive_name(name)
    assert e.value.kind == 'invalid_name'


@pytest.mark.parametrize('name', ['etc-{now:%Y-%m-%dT%H:%M:%S}', 'web1.etc-2026-01-01T02:00:00', 'db_main@x'])
def test_archive_names_and_templates_are_accepted(name):
    assert b.validate_archive_name(name) == name


def test_repository_starting_with_dash_is_refused():
    with pytest.raises(b.BorgError):
        b.BorgSettings('--remote-path=evil')


def test_prune_without_rules_refuses():
    with pytest.raises(b.BorgError) as e:
        borg_with(Recorder()).prune('etc-*', {})
    assert 'refusing' in e.value.msg


def test_parse_prune_list():
    err = '\n'.join(json.dumps({'type': 'log_message', 'levelname': 'INFO', 'name': 'borg.output.list',
                                'message': m}) for m in [
        'Keeping archive (rule: daily #1):        etc-3              Tue, 2026-11-03 10:00:00 [5e0b]',
        'Keeping archive (rule: within #1):       etc-2              Mon, 2026-11-02 10:00:00 [0a65]',
        'Would prune:                             etc-1              Sun, 2026-11-01 10:00:00 [f7d1]',
        'Pruning archive (1/1):                   etc-0              Sun, 2026-11-01 09:00:00 [f7d2]'])
    out = b.parse_prune_list(err)
    assert out['kept'] == [{'name': 'etc-3', 'rule': 'daily #1'}, {'name': 'etc-2', 'rule': 'within #1'}]
    assert out['pruned'] == [{'name': 'etc-1'}, {'name': 'etc-0'}]


def test_list_children_argv_filters_with_a_pattern_not_a_positional():
    out = ('{"type": "d", "mode": "drwxr-xr-x", "path": "etc/(.*)"}\n'
           '{"type": "-", "mode": "-rw-r--r--", "path": "etc/tab\\there"}\n')
    rec = Recorder(out=out)
    items = borg_with(rec).list_children('etc-1', '/etc/')
    argv = rec.calls[0][0]
    assert argv[argv.index('--') + 1:] == ['ssh://borg@backup1:2222/srv/borg/web1/etc::etc-1']
    assert argv[argv.index('--exclude') + 1] == b.children_pattern('etc') and '--json-lines' in argv
    assert [i['path'] for i in items] == ['etc/(.*)', 'etc/tab\there']


@pytest.mark.parametrize('directory', ['a[1]', 'b*', 'c?d', 'x.y', 'with space', '(.*)', 'n\nl', 'a/b+c', '^$'])
def test_children_pattern_is_literal(directory):
    """borg matches re: patterns with re.search on the item path: only the direct children match."""
    pattern = b.children_pattern(directory + '/')
    assert pattern.startswith('re:')
    excluded = re.compile(pattern[3:]).search
    kept = [directory + '/child', directory + '/x.y', directory + '/(.*)', directory + '/n\nl']
    dropped = [directory, directory + '/child/deeper', directory + '/', 'other/child', 'x' + directory + '/c',
               directory + 'x/child', 'a1/child', 'bb/child', 'cxd/child', 'xzy/child', 'p/' + directory + '/c']
    assert [p for p in kept if excluded(p)] == []
    assert [p for p in dropped if not excluded(p)] == []
    top = re.compile(b.children_pattern('')[3:]).search
    assert [p for p in ('etc', '(.*)', 'a b', 'etc/x', 'etc/x/y') if not top(p)] == ['etc', '(.*)', 'a b']


def log(msg, msgid=None, level='ERROR'):
    rec = {'type': 'log_message', 'levelname': level, 'message': msg, 'name': 'borg.archiver'}
    if msgid:
        rec['msgid'] = msgid
    return json.dumps(rec)


@pytest.mark.parametrize('stderr,kind', [
    (log('passphrase supplied in BORG_PASSPHRASE ... is incorrect.', 'PassphraseWrong'), 'wrong_passphrase'),
    (log('Repository /x does not exist.', 'Repository.DoesNotExist'), 'repository_missing'),
    (log('Failed to create/acquire the lock /x/lock.exclusive (timeout).', 'LockTimeout'), 'locked'),
    (log('Remote: ssh: connect to host 127.0.0.9 port 22: Connection refused', level='WARNING') + '\n'
     + log('Connection closed by remote host. Is borg working on the server?', 'ConnectionClosedWithHint'),
     'unreachable'),
    (log('Remote: root@h: Permission denied (publickey).', level='WARNING') + '\n'
     + log('Connection closed by remote host.', 'ConnectionClosedWithHint'), 'auth_refused'),
    (log('/srv/borg/web2/etc is not inside of an allowed path', 'PathNotAllowed'), 'permission_denied'),
    (log('d/big: read: [Errno 28] No space left on device', level='WARNING') + '\n' + log('Local Exception',
                                                                                         'Exception'),
     'no_space_local'),  # nothing of the repository's code in the error: this host's disk
    (log('Traceback (most recent call last):\n  File "/usr/lib/python3/dist-packages/borg/remote.py", line 240, '
         'in serve\n    res = f(**args)\n  File "/usr/lib/python3/dist-packages/borg/repository.py", line 1230, in '
         'put\nOSError: [Errno 28] No space left on device\n', 'OSError'), 'no_space'),  # the server's pool
    ('Host key verification failed.\n' + log('Connection closed by remote host.', 'ConnectionClosedWithHint'),
     'host_key'),
])
def test_classify(stderr, kind):
    assert b.classify(2, stderr)[0] == kind


def test_secrets_are_masked_in_errors():
    rec = Recorder(rc=2, out='', err=log('weird failure mentioning %s' % SECRET))
    with pytest.raises(b.BorgError) as e:
        borg_with(rec).info()
    assert SECRET not in e.value.msg and SECRET not in e.value.stderr
    assert SECRET not in ' '.join(e.value.cmd)


def test_missing_borg_is_reported_without_running_anything(tmp_path):
    rec = Recorder()
    for binary in ('/nonexistent/borg', 'borg-not-installed-here'):
        borg = b.Borg(b.BorgSettings(str(tmp_path / 'r'), passphrase=SECRET, borg_binary=binary), runner=rec)
        with pytest.raises(b.BorgError) as e:
            borg.check_installed()
        assert e.value.kind == 'not_installed' and 'not installed' in e.value.msg
    assert rec.calls == []
    assert b.Borg(b.BorgSettings(str(tmp_path / 'r'))).check_installed().endswith('borg')
