"""plugins/module_utils/borg.py against real borg and local repositories: each failure class
produced for real (no mocks of borg). Its pure logic is tested in tests/unit/test_borg_utils.py."""

import os
import subprocess

import pytest

from ansible_collections.borgfleet.backup.plugins.module_utils import borg as b

SECRET = 'pa55-Phrase-For-Tests'


@pytest.fixture
def repo(tmp_path):
    settings = b.BorgSettings(str(tmp_path / 'repo'), passphrase=SECRET, lock_wait=1,
                              borg_base_dir=str(tmp_path / 'base'))
    borg = b.Borg(settings)
    borg.init()
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'file').write_text('hello\n')
    borg.create('etc-1', [str(data)])
    return borg, tmp_path


def test_real_wrong_passphrase_changes_nothing(repo):
    borg, tmp = repo
    before = borg.list_archives()
    wrong = b.Borg(b.BorgSettings(borg.settings.repository, passphrase='not-' + SECRET,
                                  borg_base_dir=borg.settings.borg_base_dir))
    with pytest.raises(b.BorgError) as e:
        wrong.create('etc-2', [str(tmp / 'data')])
    assert e.value.kind == 'wrong_passphrase'
    assert 'wrong passphrase' in e.value.msg
    assert borg.list_archives() == before


def test_real_missing_repository(tmp_path):
    borg = b.Borg(b.BorgSettings(str(tmp_path / 'nope'), passphrase=SECRET, borg_base_dir=str(tmp_path)))
    with pytest.raises(b.BorgError) as e:
        borg.list_archives()
    assert e.value.kind == 'repository_missing'
    assert borg.exists() is False


def test_real_locked_repository(repo):
    borg, tmp = repo
    holder = subprocess.Popen(['borg', 'with-lock', borg.settings.repository, 'sleep', '20'],
                              env=dict(os.environ, BORG_PASSPHRASE=SECRET,
                                       BORG_BASE_DIR=borg.settings.borg_base_dir))
    try:
        lock = os.path.join(borg.settings.repository, 'lock.exclusive')
        for _ in range(100):
            if os.path.exists(lock):
                break
            subprocess.run(['sleep', '0.1'])
        with pytest.raises(b.BorgError) as e:
            borg.create('etc-2', [str(tmp / 'data')])
        assert e.value.kind == 'locked'
        assert 'locked by another borg run' in e.value.msg
    finally:
        holder.terminate()
        holder.wait()


def test_real_unreachable_host(tmp_path):
    # Port 9 on loopback: nothing listens there, the connection is refused at once.
    borg = b.Borg(b.BorgSettings('ssh://borg@127.0.0.1:9/srv/x', passphrase=SECRET,
                                 ssh_known_hosts=str(tmp_path / 'kh'), borg_base_dir=str(tmp_path)))
    with pytest.raises(b.BorgError) as e:
        borg.list_archives()
    assert e.value.kind == 'unreachable'
    assert 'unreachable' in e.value.msg and 'Connection refused' in e.value.msg


def test_real_existing_archive_name(repo):
    borg, tmp = repo
    with pytest.raises(b.BorgError) as e:
        borg.create('etc-1', [str(tmp / 'data')])
    assert e.value.kind == 'exists'


def test_real_create_list_extract_roundtrip(repo):
    borg, tmp = repo
    names = [a['name'] for a in borg.list_archives(match_archives='etc-*')]
    assert names == ['etc-1']
    items, truncated = borg.list_contents('etc-1')
    assert any(i['path'].endswith('data/file') for i in items) and not truncated
    target = tmp / 'restore'
    target.mkdir()
    files, _ = borg.extract('etc-1', str(target))
    restored = target / str(tmp / 'data' / 'file').lstrip('/')
    assert restored.read_text() == 'hello\n'
    assert any(f.endswith('data/file') for f in files)


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to mount a small tmpfs')
def test_real_no_space_left(tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(small)], check=True)
    try:
        borg = b.Borg(b.BorgSettings(str(small / 'repo'), passphrase=SECRET, borg_base_dir=str(tmp_path / 'b')))
        borg.init()
        data = tmp_path / 'big'
        data.mkdir()
        (data / 'random').write_bytes(os.urandom(6 * 1024 * 1024))
        with pytest.raises(b.BorgError) as e:
            borg.create('big-1', [str(data)], compression='none')
        assert e.value.kind == 'no_space'
        assert e.value.msg.startswith('no space left on the storage pool holding repository %s' % (small / 'repo'))
        assert 'the partial data of this run was removed from the pool' in e.value.msg
        # The repository survives the failed transaction, and the aborted data is off the pool.
        assert borg.list_archives() == []
        assert os.statvfs(str(small)).f_bavail * os.statvfs(str(small)).f_frsize > 2 * 1024 * 1024
        borg.check()
    finally:
        subprocess.run(['umount', '-l', str(small)])


def test_real_create_from_command_fails_when_the_command_fails(repo):
    borg, tmp = repo
    result = borg.create_from_command('dump-1', ['printf', 'rows\n'], 'db/dump.sql')
    assert result['archive']['stats']['nfiles'] == 1
    target = tmp / 'out'
    target.mkdir()
    borg.extract('dump-1', str(target))
    assert (target / 'db' / 'dump.sql').read_text() == 'rows\n'
    with pytest.raises(b.BorgError):
        borg.create_from_command('dump-2', ['false'], 'db/dump.sql')
    assert 'dump-2' not in [a['name'] for a in borg.list_archives()]


def test_real_export_tar_and_mount(repo):
    borg, tmp = repo
    tar = tmp / 'etc.tar'
    borg.export_tar('etc-1', str(tar))
    import tarfile
    with tarfile.open(str(tar)) as t:
        assert any(n.endswith('data/file') for n in t.getnames())
    if not os.path.exists('/dev/fuse'):
        pytest.skip('no /dev/fuse')
    mnt = tmp / 'mnt'
    mnt.mkdir()
    borg.mount(str(mnt), 'etc-1')
    try:
        assert (mnt / str(tmp / 'data' / 'file').lstrip('/')).read_text() == 'hello\n'
    finally:
        borg.umount(str(mnt))
    assert not os.path.ismount(str(mnt))


def test_real_list_children_is_one_level_of_json_lines(repo):
    """Same entries, keys and values as `borg list --json-lines` restricted to one level, whatever the names."""
    borg, tmp = repo
    top = tmp / 'odd'
    names = ['a[1]', 'b*', 'c?d', 'x.y', 'with space', 'tab\there', 'new\nline', 'cr\rx', "q'uote", 'dq"x',
             'both\'"', 'back\\slash', 'é ü', '(.*)']
    for name in names:
        (top / name).mkdir(parents=True)
        (top / name / 'inner').write_text('x')
        (top / name / 'deeper').mkdir()
        (top / name / 'deeper' / 'leaf').write_text('')
    (top / 'plain').write_text('12345')
    os.symlink('new\nline/inner', str(top / 'link'))
    os.close(os.open(os.path.join(os.fsencode(top), b'bad\xffbyte'), os.O_CREAT | os.O_WRONLY))
    if os.geteuid() == 0:
        os.chown(str(top / 'plain'), 54321, 54321)  # no such user: borg reports the numbers
    borg.create('odd-1', [str(top)])
    items, _ = borg.list_contents('odd-1')
    keys = ('type', 'mode', 'user', 'group', 'size', 'mtime', 'linktarget', 'path')
    rel = str(top).lstrip('/')

    def level(parent):  # what browse did before: the whole listing, filtered here
        depth = parent.count('/') + 1 if parent else 0
        return [dict((k, i[k]) for k in keys) for i in items
                if i['path'].count('/') == depth and (not parent or i['path'].startswith(parent + '/'))]

    def children(archive, parent):
        return [dict((k, i[k]) for k in keys) for i in borg.list_children(archive, parent)]

    for parent in ['', rel, rel + '/(.*)', rel + '/a[1]', rel + '/new\nline', rel + '/x.y/deeper']:
        assert children('odd-1', parent) == level(parent), parent
    children_of_top = children('odd-1', rel)
    assert sorted(c['path'].rsplit('/', 1)[1] for c in children_of_top) == sorted(names + ['plain', 'link', 'bad?byte'])
    assert sorted(c['path'] for c in borg.list_children('odd-1', rel + '/(.*)')) == [rel + '/(.*)/deeper',
                                                                                   rel + '/(.*)/inner']
    if os.geteuid() == 0:
        plain = [c for c in children_of_top if c['path'].endswith('/plain')][0]
        assert (plain['user'], plain['group'], plain['size']) == (54321, 54321, 5)
    assert borg.list_children('odd-1', rel + '/plain') == [] and borg.list_children('odd-1', 'nope') == []
    # The top level of an archive made from a relative path (borg stores "." and the names under it).
    subprocess.run(['borg', 'create', '%s::odd-2' % borg.settings.repository, '.'], cwd=str(top), check=True,
                   env=dict(os.environ, **borg.settings.environment()))
    items, _ = borg.list_contents('odd-2')
    assert children('odd-2', '') == level('') and len(level('')) == len(names) + 4  # with "."
    assert children('odd-2', '(.*)/deeper') == level('(.*)/deeper') != []
