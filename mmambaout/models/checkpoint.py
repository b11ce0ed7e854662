"""Loading pretrained backbone weights: read, unwrap, convert, compare, report.

Shared by every backbone of this package. Each backbone supplies a converter that maps the public
file layouts it accepts onto its own parameter names and names the keys it deliberately ignores.
"""
import logging
import os
import re
from typing import Callable, Dict, List, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader
from torch import nn

from ..utils.checkpoint_io import (damaged_checkpoint_error, refusal_reason,
                                   weights_only_refusal)

StateDict = Dict[str, torch.Tensor]
Converter = Callable[[StateDict], Tuple[StateDict, List[str]]]

# Below this share of the backbone's tensors found with the right name and shape, the file is
# refused: it is almost certainly not a checkpoint of this backbone.
MIN_MATCHED_FRACTION = 0.5


def read_checkpoint(path: str) -> dict:
    """Read a checkpoint file (or URL) with safe unpickling; clear errors for bad files."""
    if '://' in path:
        return CheckpointLoader.load_checkpoint(path, map_location='cpu')
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Pretrained checkpoint '{path}' does not exist. Put the file there, or train from "
            "scratch with --cfg-options model.backbone.init_cfg=None.")
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises several types for damaged or foreign files
        if not weights_only_refusal(err):
            raise damaged_checkpoint_error(path, err) from err
        raise RuntimeError(
            f"Cannot read checkpoint '{path}' weights-only: {refusal_reason(err)}. If you trust "
            'its origin, convert it once with tools/convert_checkpoint.py --trust-pickle.'
        ) from err


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
    if any(k.startswith('backbone.') for k in state):
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
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
    own = model.state_dict()
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape))
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        key, theirs, ours = mismatched[0]
        raise ValueError(
            f"Checkpoint '{path}' does not fit {type(model).__name__}: '{key}' has shape {theirs} "
            f"in the file but {ours} in the model ({len(mismatched)} tensors differ). The file is "
            "for another arch: choose the matching `arch` or the matching checkpoint.")
    matched = [k for k in state if k in own]
    if len(matched) < MIN_MATCHED_FRACTION * len(own):
        raise ValueError(
            f"Checkpoint '{path}' is not a {type(model).__name__} checkpoint: only "
            f"{len(matched)} of the model's {len(own)} tensors were found in it. First keys in "
            f"the file: {sorted(state)[:5]}; expected keys such as {sorted(own)[:5]}.")
    model.load_state_dict(state, strict=False)

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    fresh = [k for k in missing if k.startswith(expected_missing)]
    print_log(f'Loaded {len(matched)}/{len(own)} backbone tensors from {path}', logger='current')
    for label, keys, level in (
            ('initialised fresh (not in classification checkpoints)', fresh, logging.INFO),
            ('MISSING from the checkpoint', sorted(set(missing) - set(fresh)), logging.WARNING),
            ('UNUSED (in the checkpoint, not in the model)', unexpected, logging.WARNING),
            ('ignored (classifier head)', sorted(ignored), logging.INFO)):
        if keys:
            print_log(f'{label}: {len(keys)} keys: {", ".join(keys)}', logger='current',
                      level=level)
