"""How mmengine reads local checkpoints here: weights-only, except files the user made or trusts.

torch >= 2.6 makes ``torch.load`` weights-only by default, and mmengine 0.10.7 calls it bare, so
the checkpoints mmengine itself writes (they hold its message hub and numpy states) no longer
load for --resume and tools/test.py. Full unpickling can run any code a file carries, so it is
allowed only for the files of the run's work dir (written by mmengine for this run or an earlier
run in it) and for files the user names as trusted (--trust-checkpoint); every other file is
read weights-only, and refused with a message naming it and the flag if it needs more.
"""
import os.path as osp
import re
from typing import Iterable

import torch
from mmengine.runner import CheckpointLoader

TRUST_FLAG = '--trust-checkpoint'


def is_inside(path: str, directory: str) -> bool:
    """Whether ``path`` lies in ``directory`` or below, after resolving symlinks."""
    path, directory = osp.realpath(path), osp.realpath(directory)
    return osp.commonpath([path, directory]) == directory


def weights_only_refusal(error: Exception) -> bool:
    """Whether torch refused the file for holding more than tensors (rather than failing to read
    it); a file damaged inside its pickle can read as a refusal too."""
    return 'Weights only load failed' in str(error)


def refusal_reason(error: Exception) -> str:
    """Why weights-only loading refused a file, with the object torch names if it does."""
    found = re.search(r'Unsupported global: GLOBAL (\S+)', str(error))
    return (f'it holds {found.group(1)}, a Python object besides tensors' if found else
            'it holds Python objects besides tensors, or is damaged')


def damaged_checkpoint_error(path: str, error: Exception) -> RuntimeError:
    reason = str(error).splitlines()[0] if str(error) else 'no data'
    return RuntimeError(
        f"Cannot read checkpoint '{path}': {type(error).__name__}: {reason}. The file is "
        'truncated or corrupted (a run killed while saving it, an interrupted copy or '
        'download): copy or download it again, or resume from an earlier checkpoint.')


def untrusted_checkpoint_error(path: str, error: Exception) -> RuntimeError:
    return RuntimeError(
        f"Refusing to unpickle checkpoint '{path}': {refusal_reason(error)}, and it is neither "
        "in this run's work dir nor trusted. Unpickling runs whatever code a file carries. If "
        'you trust where the file comes from (e.g. an mmengine checkpoint of your own), pass '
        f'{TRUST_FLAG}; otherwise convert it to a plain state dict where you can trust it.')


def load_local_checkpoint(path: str, map_location, trusted: bool):
    """``torch.load`` weights-only; fully only a ``trusted`` file that needs it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        if not weights_only_refusal(error):
            raise damaged_checkpoint_error(path, error) from error
        if not trusted:
            raise untrusted_checkpoint_error(path, error) from error
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:
        raise damaged_checkpoint_error(path, error) from error


def use_checkpoint_loader(work_dir: str, trusted_files: Iterable[str] = ()) -> None:
    """Make mmengine read local checkpoints with ``load_local_checkpoint``, trusting the files
    under ``work_dir`` and ``trusted_files``; URLs and other schemes keep mmengine's loaders."""
    trusted_files = {osp.realpath(path) for path in trusted_files}

    def load_from_local(filename, map_location=None):  # mmengine logs this name's end: 'local'
        path = osp.expanduser(filename)
        trusted = osp.realpath(path) in trusted_files or is_inside(path, work_dir)
        return load_local_checkpoint(path, map_location, trusted)

    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
