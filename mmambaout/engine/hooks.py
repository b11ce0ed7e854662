"""Hooks that make runs resumable, stop bad ones early and load published whole-model
checkpoints, registered in mmengine's ``HOOKS`` (so mmdet and mmseg configs find them).
tools/train.py and tools/test.py add them to every run (see ``mmambaout.utils.runtime``); other
runners can list them in ``custom_hooks``.
"""
import random
import re
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import find_latest_checkpoint

# the module, not its names: mmambaout.models imports mmambaout.utils, which imports these hooks
from ..models import checkpoint as backbone_checkpoint


def random_states() -> dict:
    """The states of every random number generator training draws from (of CUDA: the current
    device's; asking for all would start a CUDA context on every GPU from every process)."""
    states = dict(python=random.getstate(), numpy=np.random.get_state(),
                  torch=torch.get_rng_state())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state()
    return states


def set_random_states(states: dict) -> None:
    """Restore ``random_states()``; resuming maps the checkpoint to the GPU, torch wants the
    generator states on the CPU."""
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'].cpu())
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states['cuda'].cpu())


@HOOKS.register_module()
class ResumeRandomStateHook(Hook):
    """Save the random generators' states in every checkpoint and restore them on resume.

    mmengine saves only the seed: a resumed run reseeds and draws other flips and RoI samples
    than the run it continues. With the states restored, and validation made to leave them as it
    found them (the run that was not stopped validates between a checkpoint and the next epoch,
    the resumed one does not), a run resumed from an epoch checkpoint ends with the same weights
    as an uninterrupted one, given deterministic settings (tested with data loaded in the
    training process; persistent dataloader workers keep generators of their own, which no
    checkpoint holds). Distributed runs restore rank 0's states in every process.
    """

    def __init__(self) -> None:
        self.loaded_states: Optional[dict] = None
        self.states_before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['random_states'] = random_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.loaded_states = checkpoint.get('random_states')

    def before_train(self, runner) -> None:
        # Only a resumed run continues from iteration > 0; load_from alone starts afresh.
        if self.loaded_states is not None and runner.iter > 0:
            set_random_states(self.loaded_states)
        self.loaded_states = None

    def before_val(self, runner) -> None:
        self.states_before_val = random_states()

    def after_val(self, runner) -> None:
        if self.states_before_val is not None:
            set_random_states(self.states_before_val)
        self.states_before_val = None


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class StopOnNonFiniteLossHook(Hook):
    """Stop training at the first iteration whose loss is NaN or infinite.

    The optimizer has already stepped with that loss's gradients, so the weights in memory are
    spoilt; the hook raises before CheckpointHook (lower priority) could save them, which keeps
    the last checkpoint good. mmdet's CheckInvalidLossHook checks only every ``interval``
    iterations (a checkpoint of NaN weights can be saved in between) and raises a bare
    AssertionError.
    """
    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if torch.isfinite(outputs['loss']).all():
            return
        losses = ', '.join(f'{name}={value.item():.4g}' for name, value in outputs.items()
                           if name.startswith('loss'))
        last = runner.message_hub.get_info('last_ckpt')  # set by CheckpointHook on each save
        kept = (f'The last good checkpoint is {last}: to go on from its weights with new '
                f'settings, add --cfg-options load_from={last} (--resume would also bring back '
                'its learning rate and optimizer state).' if last else
                'No checkpoint had been saved yet.')
        raise NonFiniteLossError(
            f'The loss became non-finite at iteration {runner.iter + 1} (epoch '
            f'{runner.epoch + 1}, batch {batch_idx + 1}): {losses}. Training stopped before '
            'the spoilt weights could be saved. Lower the learning rate '
            '(optim_wrapper.optimizer.lr), lengthen the warm-up or clip gradients '
            f'(optim_wrapper.clip_grad). {kept}')


def receiving_module(model):
    """The module whose state dict a checkpoint's ``state_dict`` fills (as mmengine unwraps)."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def loaded_checkpoint_path(runner) -> Optional[str]:
    """The file the runner is loading: ``load_from`` (test, fine-tuning, --resume PATH), else
    the work dir's latest (--resume alone)."""
    return runner.cfg.get('load_from') or find_latest_checkpoint(runner.work_dir)


@HOOKS.register_module()
class ConvertBackboneCheckpointHook(Hook):
    """Convert the backbone tensors of a whole published detector or segmentor to this package's
    layout as it is loaded (testing, fine-tuning with ``load_from``, resuming).

    VMamba's released Mask R-CNN and UperNet checkpoints hold their backbone in VMamba's own key
    layout and their neck and heads in mmdet's and mmseg's: the backbone's converter renames the
    former (checked and reported as for a pretrained backbone), the rest loads as it is. Files in
    this package's layout pass unchanged. Runs before RefuseMismatchedCheckpointHook, which then
    sees the converted keys.
    """
    priority = 'ABOVE_NORMAL'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        backbone = getattr(receiving_module(runner.model), 'backbone', None)
        if not hasattr(backbone, 'convert_checkpoint'):  # not a backbone of this package
            return
        state = checkpoint.get('state_dict', checkpoint)
        converted = backbone_checkpoint.convert_backbone_keys(state, backbone,
                                                              loaded_checkpoint_path(runner))
        if converted is not state:  # mmengine loads what the dict holds after the hooks
            state.clear()
            state.update(converted)


def checkpoint_misfit(own: dict, theirs: dict) -> Optional[str]:
    """What keeps ``theirs`` from filling ``own``: the first tensor of another shape, else the
    first one missing; None if it fits."""
    mismatched = [(key, tuple(value.shape), tuple(own[key].shape))
                  for key, value in theirs.items()
                  if key in own and tuple(value.shape) != tuple(own[key].shape)]
    if mismatched:
        key, file_shape, model_shape = mismatched[0]
        return (f"'{key}' has shape {file_shape} in the file but {model_shape} in the model "
                f'({len(mismatched)} tensors differ)')
    missing = sorted(key for key in own if key not in theirs
                     and not key.endswith('num_batches_tracked'))
    if missing:
        return (f"'{missing[0]}' is not in the file ({len(missing)} of the model's {len(own)} "
                'tensors are missing)')
    return None


@HOOKS.register_module()
class RefuseMismatchedCheckpointHook(Hook):
    """Refuse a checkpoint that does not fill the whole model, for testing and resuming.

    mmengine loads non-strictly and only warns, so testing with a checkpoint of another
    backbone arch or class count would evaluate a partly random model. (Fine-tuning with
    ``load_from`` keeps mmengine's warnings: new heads are expected there.)
    """

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        theirs = {re.sub(r'^module\.', '', key): value  # mmengine's own key revision
                  for key, value in checkpoint.get('state_dict', checkpoint).items()
                  if isinstance(value, torch.Tensor)}
        misfit = checkpoint_misfit(receiving_module(runner.model).state_dict(), theirs)
        if misfit:
            raise ValueError(
                f"Checkpoint '{loaded_checkpoint_path(runner)}' does not fit the model of this "
                f'config: {misfit}. It was made with another config (backbone arch, number of '
                'classes, ...): use the config it was trained with, or a checkpoint of this one.')
