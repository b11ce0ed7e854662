"""How checkpoints are read here: weights-only, except files the user made or trusts; URLs
through torch.hub's cache.

torch >= 2.6 makes ``torch.load`` weights-only by default, and mmengine 0.10.7 calls it bare, so
the checkpoints mmengine itself writes (they hold its message hub and numpy states) no longer
load for --resume and tools/test.py. Full unpickling can run any code a file carries, so it is
allowed only for the files of the run's work dir (written by mmengine for this run or an earlier
run in it) and for files the user names as trusted (--trust-checkpoint); every other file is
read weights-only, and refused with a message naming it and the flag if it needs more.

Checkpoints named by URL are downloaded once into torch.hub's cache, as mmengine does, and then
read like local files. mmengine's own URL loader cannot be kept: it unpickles fully (torch.hub's
``load_state_dict_from_url`` defaults to ``weights_only=False``).
"""
import os
import os.path as osp
import re
import uuid
import zipfile
from typing import Iterable
from urllib.parse import urlparse

import torch
from mmengine.dist import get_dist_info
from mmengine.runner import CheckpointLoader

TRUST_FLAG = '--trust-checkpoint'
URL_SCHEMES = ('http://', 'https://')


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


def first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def damaged_checkpoint_error(path: str, error: Exception) -> RuntimeError:
    reason = first_line(error)
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


def read_pretrained(path: str, mmap: bool = False) -> dict:
    """``torch.load`` weights-only, for pretrained backbones (never unpickled fully: there is
    no run-time flag to trust them, a file converted once serves instead); clear errors.

    Args:
        mmap: map the tensors instead of reading them (zip files only), to check a file cheaply.
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=True,
                          mmap=mmap and zipfile.is_zipfile(path))
    except Exception as error:  # torch raises several types for damaged or foreign files
        if not weights_only_refusal(error):
            raise damaged_checkpoint_error(path, error) from error
        raise RuntimeError(
            f"Cannot read checkpoint '{path}' weights-only: {refusal_reason(error)}. If you trust "
            'its origin, convert it once with tools/convert_checkpoint.py --trust-pickle and '
            'use the file it writes (--cfg-options model.backbone.init_cfg.checkpoint=FILE).'
        ) from error


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


def is_url(path: str) -> bool:
    return path.startswith(URL_SCHEMES)


def cached_path(url: str) -> str:
    """Where torch.hub and mmengine keep the download of ``url``:
    ``<torch.hub.get_dir()>/checkpoints/<file name>`` (``$TORCH_HOME/hub``, by default
    ``~/.cache/torch/hub``)."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


class CheckpointDownloadError(RuntimeError):
    """A checkpoint URL is not cached and could not be downloaded whole."""


def check_complete(path: str) -> None:
    """Raise ValueError unless ``path`` holds a whole checkpoint.

    A file torch reads weights-only is whole. One it refuses for its Python objects is whole if
    it is a zip archive (torch's format; the archive's directory is its last record, which a cut
    file lacks); a refused file in torch's pre-1.6 format cannot be checked and is not accepted.
    """
    try:
        torch.load(path, map_location='cpu', weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # torch raises several types for damaged files
        if not (weights_only_refusal(error) and zipfile.is_zipfile(path)):
            raise ValueError(f'the {osp.getsize(path)} bytes received are not a whole '
                             f'checkpoint ({first_line(error)})') from error


def download_checkpoint(url: str) -> str:
    """The local copy of ``url``: the cached one, else downloaded into the cache first.

    torch.hub's downloader writes to a temporary file and renames it after a transfer that
    raised no error, but a server that closes the connection early raises none (http.client
    ends the body there, short of its Content-Length); so the file is also read once before it
    takes its place in the cache.
    """
    cached = cached_path(url)
    if osp.isfile(cached):
        return cached
    os.makedirs(osp.dirname(cached), exist_ok=True)
    received = f'{cached}.{uuid.uuid4().hex}.download'  # own name: processes may race here
    try:
        torch.hub.download_url_to_file(url, received, progress=True)
        check_complete(received)
        os.replace(received, cached)
    except Exception as error:  # network, HTTP and file errors alike
        raise CheckpointDownloadError(
            f"Cannot download checkpoint '{url}': {first_line(error)}. Without network, "
            f"download it elsewhere and put it at '{cached}': it is then used as it is"
        ) from error
    finally:
        if osp.exists(received):
            os.remove(received)
    return cached


def use_checkpoint_loader(work_dir: str, trusted_files: Iterable[str] = ()) -> None:
    """Make mmengine read local checkpoints with ``load_local_checkpoint``, trusting the files
    under ``work_dir`` and ``trusted_files``, and URLs from torch.hub's cache (downloading them
    there first) in the same way; other schemes keep mmengine's loaders."""
    trusted_files = {path if is_url(path) else osp.realpath(path) for path in trusted_files}

    def load_from_local(filename, map_location=None):  # mmengine logs this name's end: 'local'
        path = osp.expanduser(filename)
        trusted = osp.realpath(path) in trusted_files or is_inside(path, work_dir)
        return load_local_checkpoint(path, map_location, trusted)

    def load_from_url(filename, map_location=None):
        # as mmengine's URL loader: the first process downloads, the others wait for it
        rank, world_size = get_dist_info()
        if rank == 0:
            path = download_checkpoint(filename)
        if world_size > 1:
            torch.distributed.barrier()
            path = download_checkpoint(filename)
        return load_local_checkpoint(path, map_location, filename in trusted_files)

    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=URL_SCHEMES, loader=load_from_url, force=True)
