"""Each module run through real ansible-playbook against real borg on a local repository.

The style of community.crypto's tests: check mode, real, again (idempotent), again in check mode,
asserting `changed` each time, and the result read back with borg itself."""

import json
import os
import subprocess

import pytest

from tests.lib.playbook import four_ways, run_module

SECRET = 'Module-Test-Passphrase-7'


def borg(repo, *args, base=None):
    env = dict(os.environ, BORG_PASSPHRASE=SECRET)
    if base:
        env['BORG_BASE_DIR'] = base
    return subprocess.run(['borg'] + list(args) + [repo], env=env, check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout


def archive_names(repo, base):
    return [a['name'] for a in json.loads(borg(repo, 'list', '--json', base=base))['archives']]


@pytest.fixture
def common(tmp_path):
    return {'repository': str(tmp_path / 'repo'), 'passphrase': SECRET, 'borg_base_dir': str(tmp_path / 'base')}


@pytest.fixture
def data(tmp_path):
    d = tmp_path / 'data'
    (d / 'keep').mkdir(parents=True)
    (d / 'keep' / 'a.txt').write_text('alpha\n')
    (d / 'skip.tmp').write_text('excluded\n')
    cache = d / 'cachedir'
    cache.mkdir()
    (cache / 'CACHEDIR.TAG').write_text('Signature: 8a477f597d28d172789f06886806bc55\n')
    (cache / 'junk').write_text('junk\n')
    return d


def test_repository_four_ways(tmp_path, common):
    def repository_id():  # as borg itself reads it; None while there is no repository
        if not os.path.exists(common['repository']):
            return None
        return json.loads(borg(common['repository'], 'info', '--json', base=common['borg_base_dir']))['repository']['id']

    in_check, real, _, again_in_check = four_ways(tmp_path, 'borg_repository', common, repository_id)
    assert in_check['created'] and real['created']
    assert real['repository']['encryption'] == 'repokey-blake2'
    assert os.path.isfile(os.path.join(common['repository'], 'config'))
    assert repository_id() == real['repository']['id'] == again_in_check['repository']['id']


def test_repository_append_only_and_wrong_passphrase(tmp_path, common):
    run_module(tmp_path, 'borg_repository', common)
    config = tmp_path / 'repo' / 'config'
    assert 'append_only = 0' in config.read_text()
    _, real, _, _ = four_ways(tmp_path, 'borg_repository', dict(common, append_only=True), config.read_text)
    assert real['repository']['append_only'] is True
    assert 'append_only = 1' in config.read_text()
    before = (tmp_path / 'repo' / 'config').read_text()
    r = run_module(tmp_path, 'borg_repository', dict(common, passphrase='Not-The-Right-One-42'), expect_failure=True)
    assert r['failed'] and r['error_kind'] == 'wrong_passphrase'
    assert 'wrong passphrase' in r['msg']
    assert (tmp_path / 'repo' / 'config').read_text() == before


def test_archive_four_ways_with_excludes(tmp_path, common, data):
    run_module(tmp_path, 'borg_repository', common)
    args = dict(common, name='files-fixed', paths=[str(data)], exclude=['*.tmp'])
    names = lambda: archive_names(common['repository'], common['borg_base_dir'])  # noqa: E731
    assert names() == []
    # A fixed name that exists is left alone: idempotent.
    _, r, _, _ = four_ways(tmp_path, 'borg_archive', args, names)
    stats = r['archive']['stats']
    assert stats['nfiles'] == 1  # only keep/a.txt: skip.tmp and the tagged cache dir are excluded
    assert stats['original_size'] > 0 and stats['deduplicated_size'] > 0 and r['archive']['duration'] >= 0
    assert archive_names(common['repository'], common['borg_base_dir']) == ['files-fixed']
    listing = borg(common['repository'] + '::files-fixed', 'list', '--short', base=common['borg_base_dir'])
    assert 'keep/a.txt' in listing
    assert 'skip.tmp' not in listing and 'cachedir/junk' not in listing


def test_archive_template_and_delete_four_ways(tmp_path, common, data):
    run_module(tmp_path, 'borg_repository', common)
    r = run_module(tmp_path, 'borg_archive', dict(common, name='files-{now:%Y-%m-%dT%H:%M:%S}', paths=[str(data)]))
    name = r['archive']['name']
    assert name.startswith('files-20') and '{' not in name
    assert archive_names(common['repository'], common['borg_base_dir']) == [name]
    gone = dict(common, name=name, state='absent', compact=True)
    four_ways(tmp_path, 'borg_archive', gone, lambda: archive_names(common['repository'], common['borg_base_dir']))
    assert archive_names(common['repository'], common['borg_base_dir']) == []


def test_archive_name_with_metacharacters_is_refused(tmp_path, common, data):
    run_module(tmp_path, 'borg_repository', common)
    marker = tmp_path / 'pwned'
    r = run_module(tmp_path, 'borg_archive', dict(common, name='x;touch %s' % marker, paths=[str(data)]),
                 expect_failure=True)
    assert r['failed'] and 'not allowed' in r['msg']
    assert not marker.exists()
    assert archive_names(common['repository'], common['borg_base_dir']) == []


def make_archives(common, data, names_times):
    """Archives with chosen times, made with raw borg (prune rules need controlled dates)."""
    for name, when in names_times:
        subprocess.run(
            ['borg', 'create', '--timestamp', when, '--', common['repository'] + '::' + name, str(data)],
            env=dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common['borg_base_dir']), check=True)


def test_prune_four_ways_limited_to_one_backup(tmp_path, common, data):
    run_module(tmp_path, 'borg_repository', common)
    make_archives(common, data, [('etc-1', '2026-11-01T10:00:00'), ('etc-2', '2026-11-02T10:00:00'),
                                 ('etc-2b', '2026-11-02T11:00:00'), ('etc-3', '2026-11-03T10:00:00'),
                                 ('www-1', '2026-10-01T10:00:00')])
    args = dict(common, match_archives='etc-*', keep_daily=2)
    names = lambda: archive_names(common['repository'], common['borg_base_dir'])  # noqa: E731
    assert len(names()) == 5
    in_check, real, again, _ = four_ways(tmp_path, 'borg_prune', args, names)
    assert [k['name'] for k in in_check['kept']] == ['etc-3', 'etc-2b']
    assert [k['rule'] for k in in_check['kept']] == ['daily #1', 'daily #2']
    assert sorted(p['name'] for p in in_check['pruned']) == ['etc-1', 'etc-2']
    assert real['compacted']
    assert names() == ['www-1', 'etc-2b', 'etc-3']
    assert again['pruned'] == []


def test_archive_info_lists_and_browses(tmp_path, common, data):
    run_module(tmp_path, 'borg_repository', common)
    make_archives(common, data, [('etc-1', '2026-11-01T10:00:00'), ('www-1', '2026-11-02T10:00:00')])
    r = run_module(tmp_path, 'borg_archive_info', dict(common, match_archives='etc-*', stats=True))
    assert not r['changed']
    assert [a['name'] for a in r['archives']] == ['etc-1']
    assert r['archives'][0]['stats']['nfiles'] == 4
    r = run_module(tmp_path, 'borg_archive_info', dict(common, archive='etc-1', limit=2))
    assert len(r['contents']) == 2 and r['truncated'] is True
    path = str(data / 'keep').lstrip('/')
    r = run_module(tmp_path, 'borg_archive_info', dict(common, archive='etc-1', path=[path]))
    assert {c['path'] for c in r['contents']} == {path, path + '/a.txt'}
    assert not r['truncated']


def test_check_and_extract(tmp_path, common, data):
    run_module(tmp_path, 'borg_repository', common)
    make_archives(common, data, [('etc-1', '2026-11-01T10:00:00')])
    r = run_module(tmp_path, 'borg_check', dict(common, verify_data=True))
    assert r['ok'] and not r['changed']
    target = tmp_path / 'restore'
    keep = str(data / 'keep').lstrip('/')
    args = dict(common, archive='etc-1', target=str(target), paths=['/' + keep])
    r = run_module(tmp_path, 'borg_extract', args, check=True)
    assert r['changed'] and keep + '/a.txt' in r['files']
    assert not target.exists()
    r = run_module(tmp_path, 'borg_extract', args)
    assert r['nfiles'] == 2
    restored = target / keep / 'a.txt'
    assert restored.read_text() == (data / 'keep' / 'a.txt').read_text()
    assert not (target / str(data).lstrip('/') / 'skip.tmp').exists()
    # A corrupted segment makes the check fail, with borg's report.
    segment = max((tmp_path / 'repo' / 'data' / '0').iterdir(), key=lambda p: p.stat().st_size)
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    segment.write_bytes(bytes(raw))
    r = run_module(tmp_path, 'borg_check', dict(common, scope='repository'), expect_failure=True)
    assert r['failed'] and 'problems' in r['msg']
