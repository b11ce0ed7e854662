from pathlib import Path

from setuptools import find_packages, setup

try:  # the CPU selective scan is compiled against the torch it will run with
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError as error:  # e.g. in pip's isolated build environment
    raise SystemExit('mmambaout: setup.py needs torch importable to compile its CPU kernel: '
                     'install torch first, then `pip install --no-build-isolation --use-pep517 '
                     '-e .` (`make install` does)') from error


def read_requirements(name):
    lines = Path(__file__).parent.joinpath('requirements', name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith(('#', '-r'))]


setup(
    name='mmambaout',
    version='0.1.0',
    description='MambaOut and VMamba-style backbones for MMDetection 3.x and MMSegmentation 1.x',
    packages=find_packages(include=['mmambaout', 'mmambaout.*']),
    python_requires='>=3.10',  # zip(strict=True)
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    # the CPU selective scan (mmambaout/ops/cpu_scan.py): -fopenmp-simd for its `omp simd`
    # reductions only (no OpenMP runtime); no -march: it compiles its hot functions for several
    # instruction sets itself and runs one it picks when it loads; -g0: Python's -g would make it
    # 11 MB
    ext_modules=[CppExtension('mmambaout.ops._selective_scan_cpu',
                              ['mmambaout/ops/csrc/selective_scan_cpu.cpp'],
                              extra_compile_args=['-O3', '-fopenmp-simd', '-g0'])],
    cmdclass={'build_ext': BuildExtension},
)
