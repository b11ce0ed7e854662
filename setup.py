from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name):
    lines = Path(__file__).parent.joinpath('requirements', name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith(('#', '-r'))]


setup(
    name='mmambaout',
    version='0.1.0',
    description='MambaOut and VMamba-style backbones for MMDetection 3.x and MMSegmentation 1.x',
    packages=find_packages(include=['mmambaout', 'mmambaout.*']),
    python_requires='>=3.9',
    install_requires=read_requirements('torch.txt') + read_requirements('runtime.txt') + ['mmcv==2.1.0'],
    extras_require={'tests': read_requirements('tests.txt')},
)
