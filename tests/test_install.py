"""The install path: ranges for users with their own PyTorch (setup.py), the exact tested set
(requirements/lock.txt), the constraints of `make install TORCH=system`
(tools/pip_constraints.sh), the build choices of tools/install_mmcv.sh, and an offline
`make install` from `make wheelhouse` that trains a toy step."""
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mmambaout.datasets import make_toy_coco

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / 'requirements/lock.txt'
CACHE = Path(os.environ.get('MMAMBAOUT_CACHE', Path.home() / '.cache/mmambaout'))
# torch, torchvision and what only torch needs: never in the lock (nor in the wheelhouse)
TORCH_FAMILY = re.compile(r'^(torch|torchvision|triton|nvidia-.*|cuda-.*|sympy|mpmath|networkx)$')


def lock_pins() -> dict:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith('#'):
            name, version = line.split('==')
            pins[canonicalize_name(name)] = version
    return pins


def install_requires() -> dict:
    """mmambaout's installed requirements (what pip acts on), without the extras."""
    requires = [Requirement(r) for r in metadata.requires('mmambaout')]
    return {canonicalize_name(r.name): r.specifier for r in requires if r.marker is None}


# Versions a user may bring, and ones the toolboxes refuse: written here, not read from the files.
ADMITTED = {'torch': ['2.1.0', '2.11.0', '2.13.0', '2.14.1'], 'mmcv': ['2.0.0', '2.1.0'],
            'mmdet': ['3.3.0'], 'mmsegmentation': ['1.2.2'], 'mmengine': ['0.10.7'],
            'setuptools': ['80.10.2']}
REFUSED = {'torch': ['2.0.1'], 'mmcv': ['1.7.2', '2.2.0'], 'mmdet': ['3.2.0', '3.4.0'],
           'mmsegmentation': ['1.2.1', '1.3.0'], 'mmengine': ['1.0.0'], 'setuptools': ['81.0.0']}


@pytest.mark.parametrize('name', ADMITTED)
def test_install_requires_are_ranges(name):
    specifier = install_requires()[name]
    assert all(specifier.contains(v, prereleases=True) for v in ADMITTED[name]), specifier
    assert not any(specifier.contains(v, prereleases=True) for v in REFUSED[name]), specifier


def test_lock_is_within_the_ranges_and_leaves_torch_out():
    pins = lock_pins()
    assert not [name for name in pins if TORCH_FAMILY.match(name) or name == 'mmcv']
    for name, specifier in install_requires().items():
        if name in pins:
            assert specifier.contains(pins[name]), (name, pins[name], specifier)


def requirement_closure(roots, follow=lambda name: True) -> set:
    """Every distribution the roots need, through the installed packages' metadata (of those
    that ``follow`` admits)."""
    env, seen, todo = default_environment(), set(), [(r, '') for r in roots]
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for text in (metadata.requires(name) or []) if follow(name) else []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({**env, 'extra': extra}):
                todo += [(requirement.name, e) for e in ('', *requirement.extras)]
    return {name for name, _ in seen}


def test_lock_holds_everything_the_package_needs_but_torch():
    # the wheelhouse is the lock: an offline install must find every dependency in it. A version
    # other than the lock's (TORCH=system keeps what the Python has) needs what it needs, which
    # is not the lock's to hold.
    pins = lock_pins()
    needed = requirement_closure(
        ['mmambaout', 'pytest', 'timm'],
        follow=lambda name: name not in pins or metadata.version(name) == pins[name])
    needed |= {'setuptools', 'wheel', 'ninja'}
    missing = {n for n in needed if not TORCH_FAMILY.match(n)} - {'mmambaout', 'mmcv'}
    assert missing - set(pins) == set()


def test_system_constraints_keep_what_the_python_has(tmp_path):
    lock = tmp_path / 'lock.txt'
    lock.write_text('# a comment\nnumpy==0.0.1\nnot-installed-anywhere==1.0\nsetuptools==70.0\n')
    result = subprocess.run(['bash', 'tools/pip_constraints.sh', 'system', str(lock)], cwd=REPO,
                            env={**os.environ, 'PYTHON': sys.executable},
                            capture_output=True, text=True, check=True)
    constraints = set(result.stdout.splitlines())
    assert f'numpy=={metadata.version("numpy")}' in constraints
    assert f'torch=={metadata.version("torch")}' in constraints
    assert {'not-installed-anywhere==1.0', 'setuptools==70.0'} <= constraints
    assert 'numpy==0.0.1' not in constraints and '# a comment' not in constraints
    assert not [c for c in constraints if re.match(r'(pip|setuptools|wheel)==', c)
                and c != 'setuptools==70.0']


def install_mmcv(tmp_path, *args, **env):
    """tools/install_mmcv.sh with its cache in tmp_path and no package index to fetch from."""
    env = {**os.environ, 'PYTHON': sys.executable,
           'MMAMBAOUT_CACHE': str(tmp_path), 'PIP_NO_INDEX': '1',
           'PIP_FIND_LINKS': str(tmp_path), 'CUDA_VISIBLE_DEVICES': '', **env}
    for name in [k for k, v in env.items() if v is None]:
        del env[name]
    return subprocess.run(['bash', 'tools/install_mmcv.sh', *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


def cached_wheel(tmp_path, variant: str, torch_version: str = torch.__version__) -> Path:
    folder = tmp_path / f'wheels/mmcv-2.1.0-torch{torch_version.replace("+", "_")}-{variant}'
    folder.mkdir(parents=True)
    wheel = folder / 'mmcv-2.1.0-cp3-cp3-linux_x86_64.whl'
    wheel.touch()
    return wheel


def test_cpu_wheel_is_cached_by_torch_version(tmp_path):
    wheel = cached_wheel(tmp_path, 'cpu')
    result = install_mmcv(tmp_path, '--wheel-only', FORCE_CUDA=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(wheel)]


def cuda_compiler():
    """A CUDA toolkit: CUDA_HOME's, the nvcc on PATH's or one that CUDA_FROM_PYPI=1 assembled."""
    home = os.environ.get('CUDA_HOME')
    nvcc = ((home and shutil.which(f'{home}/bin/nvcc')) or shutil.which('nvcc')
            or next(iter(CACHE.glob('cuda-*/bin/nvcc')), None))
    return Path(nvcc).resolve().parent.parent if nvcc else None


# 9.0a (the H200 image's TORCH_CUDA_ARCH_LIST): an sm_90 build runs on every GPU that an sm_90a
# one runs on, and mmcv's kernels use none of sm_90a's own instructions.
@pytest.mark.skipif(torch.version.cuda is None or cuda_compiler() is None,
                    reason='needs a CUDA build of torch and a CUDA compiler')
@pytest.mark.parametrize('arch_list,arch_tag', [('8.0;9.0+PTX', 'sm80-sm90ptx'), ('9.0a', 'sm90')])
def test_cuda_wheel_is_cached_by_cuda_version_and_archs(tmp_path, arch_list, arch_tag):
    home = cuda_compiler()
    release = re.search(r'release (\d+\.\d+)', subprocess.run(
        [str(home / 'bin/nvcc'), '--version'], capture_output=True, text=True).stdout).group(1)
    wheel = cached_wheel(tmp_path, f'cuda{release}-{arch_tag}')
    result = install_mmcv(tmp_path, '--wheel-only', FORCE_CUDA='1', CUDA_HOME=str(home),
                          TORCH_CUDA_ARCH_LIST=arch_list)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(wheel)]
    assert ('so they are built for 9.0,' in result.stderr) == (arch_list == '9.0a')


def test_uncached_build_offline_names_the_key_the_cached_ones_and_the_fix(tmp_path):
    torch_version = torch.__version__.replace('+', '_')
    cached_wheel(tmp_path, 'cuda13.0-sm90')
    cached_wheel(tmp_path, 'cuda12.8-sm80-sm90ptx')
    (tmp_path / f'wheels/mmcv-2.1.0-torch{torch_version}-cpu.partial').mkdir()  # a build cut off
    cached_wheel(tmp_path, 'cpu', torch_version='2.1.0+cu121')
    result = install_mmcv(tmp_path, '--wheel-only', FORCE_CUDA='0')
    assert result.returncode == 1
    assert 'No matching distribution found for mmcv==2.1.0' in result.stderr  # pip's, first
    message = result.stderr[result.stderr.index('install_mmcv.sh: '):]
    assert message.splitlines()[1:6] == [
        f'  looked for: {tmp_path}/wheels/mmcv-2.1.0-torch{torch_version}-cpu '
        f'(torch {torch_version}, CPU ops only)',
        f'  cached in {tmp_path}/wheels:',
        '    mmcv-2.1.0-torch2.1.0_cu121-cpu (another mmcv or torch)',
        f"    mmcv-2.1.0-torch{torch_version}-cuda12.8-sm80-sm90ptx (CUDA 12.8 ops: "
        "TORCH_CUDA_ARCH_LIST='8.0;9.0+PTX')",
        f"    mmcv-2.1.0-torch{torch_version}-cuda13.0-sm90 (CUDA 13.0 ops: "
        "TORCH_CUDA_ARCH_LIST='9.0')"]
    assert f"mmcv-2.1.0.tar.gz in PIP_FIND_LINKS (now '{tmp_path}'" in message
    assert not (tmp_path / f'wheels/mmcv-2.1.0-torch{torch_version}-cpu').exists()  # nor built


@pytest.mark.parametrize('env,message', [
    (dict(FORCE_CUDA='yes'), 'FORCE_CUDA=yes: use 1'),
    (dict(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=None), 'TORCH_CUDA_ARCH_LIST=9.0'),
    (dict(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0', CUDA_HOME='/nonexistent'),
     "CUDA_HOME='/nonexistent'"),
])
def test_cuda_build_refusals_name_the_fix(tmp_path, env, message):
    if env['FORCE_CUDA'] == '1' and torch.version.cuda is None:
        pytest.skip('a CPU build of torch is refused before these checks')
    result = install_mmcv(tmp_path, '--wheel-only', **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / 'wheels').exists()  # nothing was built


def test_make_refuses_an_unknown_torch_mode():
    result = subprocess.run(['make', '-n', 'install', 'TORCH=conda'], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert 'TORCH=conda: use TORCH=pinned' in result.stderr


# ---------------------------------------------------------------- an offline install, for real

DEAD = 'http://127.0.0.1:9'  # the discard port: nothing answers there


def make(*args, cwd=REPO, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(['make', *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope='module')
def wheelhouse() -> Path:
    """`make wheelhouse` for this Python, made once per machine beside the cached mmcv wheels
    (~175 MB, the first run downloads it), keyed by the lock and the rule's commands: a change
    to either makes a new one, in place of the last."""
    this_python = f'PYTHON={sys.executable}'
    plan = make('-n', 'wheelhouse', 'WHEELHOUSE=wheelhouse', this_python)
    assert plan.returncode == 0, plan.stderr
    key = hashlib.sha256(LOCK.read_bytes() + plan.stdout.encode()).hexdigest()[:12]
    prefix = 'wheelhouse-py%d.%d-' % sys.version_info[:2]
    folder = CACHE / (prefix + key)
    if not folder.is_dir():
        for stale in CACHE.glob(prefix + '*'):  # the last lock's, or a download cut off
            shutil.rmtree(stale)
        partial = CACHE / (prefix + 'partial')
        result = make('wheelhouse', f'WHEELHOUSE={partial}', this_python)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        partial.rename(folder)
    return folder


def venv_with_this_torch(venv: Path, links: Path) -> None:
    """A new venv that holds this torch and torchvision, with what they need, as a user's venv
    would: linked from .venv, not reinstalled (5 GB), in a folder that a .pth adds to its path.
    pip leaves that folder alone: it lies outside the venv."""
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    links.mkdir()
    for name in requirement_closure(['torch', 'torchvision']):
        dist = metadata.distribution(name)
        for top in {file.parts[0] for file in dist.files} - {'..', '__pycache__'}:
            if not (links / top).exists():
                (links / top).symlink_to(dist.locate_file(top))
    (site_packages, ) = venv.glob('lib/python*/site-packages')
    (site_packages / 'torch_of_the_user.pth').write_text(f'{links}\n')


@pytest.mark.slow
def test_offline_make_install_from_the_wheelhouse_trains(wheelhouse, tmp_path):
    # A copy of the checkout: the editable install builds the CPU kernel in the source tree,
    # and the one in this checkout serves .venv.
    checkout = tmp_path / 'checkout'
    files = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                           cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, files.split('\0')):
        if (REPO / name).is_file():  # not deleted in the working tree
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    venv = tmp_path / 'venv'
    venv_with_this_torch(venv, tmp_path / 'torch_links')
    # no pip configuration (a find-links or file:// index of the machine), no index, no proxy
    offline = {name: value for name, value in os.environ.items()
               if not name.startswith('PIP_') and not name.lower().endswith('_proxy')}
    offline.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1', PIP_INDEX_URL=DEAD,
                   http_proxy=DEAD, https_proxy=DEAD, HTTP_PROXY=DEAD, HTTPS_PROXY=DEAD)

    result = make('install', 'TORCH=system', f'VENV={venv}', f'WHEELHOUSE={wheelhouse}',
                  cwd=checkout, env=offline)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]

    python = str(venv / 'bin/python')
    # where the venv finds the stack (make install has imported it: torch, mmcv.ops, mmdet, ...)
    origins = subprocess.run([python, '-c', 'import importlib.util, json; print(json.dumps('
                              '{m: importlib.util.find_spec(m).origin for m in '
                              '("torch", "mmcv", "mmdet", "mmseg", "mmambaout")}))'],
                             cwd=tmp_path, env=offline, capture_output=True, text=True, check=True)
    where = {name: Path(path).resolve() for name, path in json.loads(origins.stdout).items()}
    assert where.pop('torch') == Path(torch.__file__).resolve()  # the user's, as it was
    assert where.pop('mmambaout').is_relative_to(checkout)
    assert all(path.is_relative_to(venv) for path in where.values()), where
    # what install_mmcv.sh fetches where no mmcv wheel is cached: its source
    fetch = subprocess.run([python, '-m', 'pip', 'download', '--no-deps', '--no-build-isolation',
                            '--no-binary', ':all:', 'mmcv==2.1.0', '-d', str(tmp_path / 'sdist')],
                           env={**offline, 'PIP_FIND_LINKS': str(wheelhouse)},
                           capture_output=True, text=True)
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr

    # one training step of the toy Mask R-CNN (mmcv's RoIAlign and NMS, mmdet, the backbone)
    make_toy_coco(tmp_path / 'data/toy_coco', num_train=2, num_val=1)
    train = subprocess.run(
        [python, str(checkout / 'tools/train.py'),
         str(checkout / 'configs/toy/mask_rcnn_mambaout_femto_toy.py'), '--work-dir', 'train',
         '--cfg-options', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False', 'train_dataloader.batch_size=2',
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=2', 'default_hooks.logger.interval=1'],
        cwd=tmp_path, env=offline, capture_output=True, text=True)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    step = re.search(r'Epoch\(train\) +\[1\]\[1/1\].* loss: (\S+)', train.stdout + train.stderr)
    assert step and math.isfinite(float(step[1])), train.stdout[-3000:]
