"""Loading pretrained backbone weights: read, unwrap, convert, compare, report.

Shared by every backbone of this package. Each backbone supplies a converter that maps the public
file layouts it accepts onto its own parameter names and names the keys it deliberately ignores.
The same converter turns the backbone part of a whole published detector or segmentor (e.g.
VMamba's own Mask R-CNN and UperNet) into this package's layout.
"""
import logging
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from ..utils.checkpoint_io import (CheckpointDownloadError, download_checkpoint, is_url,
                                   read_pretrained)

StateDict = Dict[str, torch.Tensor]
Converter = Callable[[StateDict], Tuple[StateDict, List[str]]]

# Below this share of the backbone's tensors found with the right name and shape, the file is
# refused: it is almost certainly not a checkpoint of this backbone.
MIN_MATCHED_FRACTION = 0.5
BACKBONE_PREFIX = 'backbone.'  # mmdet's and mmseg's name of the backbone in a whole model
TRAIN_FROM_SCRATCH = 'train from scratch with --cfg-options model.backbone.init_cfg=None'


def read_checkpoint(path: str) -> dict:
    """Read a checkpoint file, or URL (downloaded once into torch.hub's cache), with safe
    unpickling; clear errors for bad files."""
    if is_url(path):
        try:
            path = download_checkpoint(path)
        except CheckpointDownloadError as error:
            raise CheckpointDownloadError(f'{error}; or {TRAIN_FROM_SCRATCH}.') from error
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Pretrained checkpoint '{path}' does not exist. Put the file there, or "
            f'{TRAIN_FROM_SCRATCH}.')
    return read_pretrained(path)


def unwrap_state_dict(checkpoint: dict) -> StateDict:
    """Take the tensors out of ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers.

    A whole detector or segmentor checkpoint keeps only its ``backbone.`` tensors.
    """
    for wrapper in ('state_dict', 'model'):
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    state = {k.removeprefix('module.'): v for k, v in checkpoint.items()
             if isinstance(v, torch.Tensor)}
    if any(k.startswith(BACKBONE_PREFIX) for k in state):
        state = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items()
                 if k.startswith(BACKBONE_PREFIX)}
    return state


def rename_keys(state: StateDict, renames, ignored_prefixes: Tuple[str, ...]):
    """Apply ``(regex, replacement)`` renames to every key; drop keys with ``ignored_prefixes``.

    The building block of the backbones' converters: returns ``(converted, ignored keys)``.
    """
    converted, ignored = {}, []
    for key, value in state.items():
        if key.startswith(ignored_prefixes):
            ignored.append(key)
            continue
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted, ignored


def load_pretrained(model: nn.Module, path: str, convert: Converter,
                    expected_missing: Tuple[str, ...] = ()) -> None:
    """Load ``path`` into ``model`` through ``convert``; log every key left out, refuse bad files.

    Args:
        expected_missing: key prefixes that classification checkpoints never contain (e.g. the
            output norms added for dense prediction); reported at INFO level, not as warnings.
    """
    state, ignored = convert(unwrap_state_dict(read_checkpoint(path)))
    check_fit(model, state, path)
    model.load_state_dict(state, strict=False)
    report_keys(model, state, ignored, 'Loaded', f'from {path}', expected_missing)


def check_fit(model: nn.Module, state: StateDict, source: str,
              file_keys: Optional[Dict[str, str]] = None) -> None:
    """Refuse ``state`` (in the model's key layout) if a tensor has another shape than the
    model's, or if most of the model's tensors are not in it.

    Args:
        file_keys: the file's name of each key of ``state``, named beside it when it differs.
    """
    own = model.state_dict()
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape))
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        key, theirs, ours = mismatched[0]
        named = f"'{key}'" + (f" (in the file '{file_keys[key]}')" if file_keys else '')
        raise ValueError(
            f"Checkpoint '{source}' does not fit {type(model).__name__}: {named} has shape "
            f'{theirs} in the file but {ours} in the model ({len(mismatched)} tensors differ). '
            'The file is for another arch: choose the matching `arch` or the matching '
            'checkpoint.')
    matched = [k for k in state if k in own]
    if len(matched) < MIN_MATCHED_FRACTION * len(own):
        raise ValueError(
            f"Checkpoint '{source}' is not a {type(model).__name__} checkpoint: only "
            f"{len(matched)} of the model's {len(own)} tensors were found in it. First keys in "
            f'the file: {sorted(state)[:5]}; expected keys such as {sorted(own)[:5]}.')


def report_keys(model: nn.Module, state: StateDict, ignored: List[str], verb: str, where: str,
                expected_missing: Tuple[str, ...] = ()) -> None:
    """Log how many of the model's tensors ``state`` holds, and every key missing, unused or
    ignored."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    fresh = [k for k in missing if k.startswith(expected_missing)]
    print_log(f'{verb} {len(own) - len(missing)}/{len(own)} backbone tensors {where}',
              logger='current')
    for label, keys, level in (
            ('initialised fresh (not in classification checkpoints)', fresh, logging.INFO),
            ('MISSING from the checkpoint', sorted(set(missing) - set(fresh)), logging.WARNING),
            ('UNUSED (in the checkpoint, not in the model)', unexpected, logging.WARNING),
            ('ignored (classifier head)', sorted(ignored), logging.INFO)):
        if keys:
            print_log(f'{label}: {len(keys)} keys: {", ".join(keys)}', logger='current',
                      level=level)


def rename_backbone_keys(state: StateDict, convert: Converter):
    """Apply a backbone's converter to the ``backbone.*`` tensors of a whole detector or segmentor.

    Returns ``(state with the backbone keys renamed, {our backbone key: the file's key}, the
    file's keys dropped)``; the neck's and heads' tensors are kept as they are.
    """
    others, renamed, file_keys, dropped = {}, {}, {}, []
    for key, value in state.items():
        if not key.startswith(BACKBONE_PREFIX):
            others[key] = value
            continue
        converted, ignored = convert({key[len(BACKBONE_PREFIX):]: value})
        renamed.update(converted)
        file_keys.update((new_key, key) for new_key in converted)
        dropped += [BACKBONE_PREFIX + k for k in ignored]
    return {**others, **{BACKBONE_PREFIX + k: v for k, v in renamed.items()}}, file_keys, dropped


def convert_backbone_keys(state: StateDict, backbone: nn.Module, source: str) -> StateDict:
    """A whole detector's or segmentor's tensors, the backbone's in a published layout (e.g.
    VMamba's own Mask R-CNN) → the same in this package's layout, checked and reported as a
    pretrained backbone is.

    A state dict whose backbone keys are ours already (nothing renamed or dropped) is returned as
    it is, without a report.
    """
    converted, file_keys, dropped = rename_backbone_keys(state, backbone.convert_checkpoint)
    if not dropped and all(BACKBONE_PREFIX + k == key for k, key in file_keys.items()):
        return state
    backbone_state = {k: converted[BACKBONE_PREFIX + k] for k in file_keys}
    check_fit(backbone, backbone_state, source, file_keys)
    report_keys(backbone, backbone_state, dropped, 'Converted',
                f'of {source} from a published layout to the layout of '
                f'{type(backbone).__name__} (neck and heads kept as they are)')
    return converted
