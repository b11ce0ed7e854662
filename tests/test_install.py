"""The install path: ranges for users with their own PyTorch (setup.py), the exact tested set
(requirements/lock.txt), the constraints of `make install TORCH=system`
(tools/pip_constraints.sh) and the build choices of tools/install_mmcv.sh."""
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

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / 'requirements/lock.txt'
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


def requirement_closure(roots) -> set:
    """Every distribution the roots need, through the installed packages' metadata."""
    env, seen, todo = default_environment(), set(), [(r, '') for r in roots]
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({**env, 'extra': extra}):
                todo += [(requirement.name, e) for e in ('', *requirement.extras)]
    return {name for name, _ in seen}


def test_lock_holds_everything_the_package_needs_but_torch():
    # the wheelhouse is the lock: an offline install must find every dependency in it
    needed = requirement_closure(['mmambaout', 'pytest', 'timm']) | {'setuptools', 'wheel', 'ninja'}
    missing = {n for n in needed if not TORCH_FAMILY.match(n)} - {'mmambaout', 'mmcv'}
    assert missing - set(lock_pins()) == set()


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


def cached_wheel(tmp_path, variant: str) -> Path:
    torch_version = torch.__version__.replace('+', '_')
    folder = tmp_path / f'wheels/mmcv-2.1.0-torch{torch_version}-{variant}'
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
    nvcc = shutil.which('nvcc') or next(
        iter(Path.home().glob('.cache/mmambaout/cuda-*/bin/nvcc')), None)
    return Path(nvcc).parent.parent if nvcc else None


@pytest.mark.skipif(torch.version.cuda is None or cuda_compiler() is None,
                    reason='needs a CUDA build of torch and a CUDA compiler')
def test_cuda_wheel_is_cached_by_cuda_version_and_archs(tmp_path):
    home = cuda_compiler()
    release = re.search(r'release (\d+\.\d+)', subprocess.run(
        [str(home / 'bin/nvcc'), '--version'], capture_output=True, text=True).stdout).group(1)
    wheel = cached_wheel(tmp_path, f'cuda{release}-sm80-sm90ptx')
    result = install_mmcv(tmp_path, '--wheel-only', FORCE_CUDA='1', CUDA_HOME=str(home),
                          TORCH_CUDA_ARCH_LIST='8.0;9.0+PTX')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(wheel)]


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
