"""What tools/train.py and tools/test.py do, for mmdet and mmseg configs alike.

The tools mirror mmdet 3.3's and mmseg 1.2.2's own (same flags, same work-dir rule, same runner
construction); the toolbox is the config's ``default_scope``. On top of theirs:

* the pretrained and dataset files are checked before the runner is built, so a missing file
  stops the run at start-up with an error that says where the file belongs; a pretrained file
  named by URL is downloaded then (once, into torch.hub's cache);
* a machine without a GPU gets the changes it needs (fp32 instead of AMP, gloo instead of nccl),
  each announced by a WARNING log line;
* checkpoints written by mmengine in the run's work dir can be read again under torch >= 2.6,
  other files only weights-only unless the user trusts them (see ``checkpoint_io``);
* hooks make a resumed run continue exactly, stop a run whose loss turns NaN before it saves
  the spoilt weights, convert the backbone of a published whole model (VMamba's Mask R-CNN and
  UperNet) as it loads, and refuse a tested or resumed checkpoint that does not fit the model
  (see ``mmambaout.engine.hooks``).
"""
import datetime
import importlib
import logging
import os
import os.path as osp
from typing import Iterator, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

from .. import engine  # noqa: F401  (registers the hooks added below)
from .checkpoint_io import (TRUST_FLAG, CheckpointDownloadError, download_checkpoint, is_url,
                            read_pretrained, use_checkpoint_loader)
from .data_check import check_dataset_files

TOOLBOXES = ('mmdet', 'mmseg')
# The metric that dumps test predictions to a pickle file (--out). mmdet's stores masks as RLE.
DUMP_METRICS = {'mmdet': 'DumpDetResults', 'mmseg': 'DumpResults'}
# AmpOptimWrapper arguments that the fp32 OptimWrapper does not take.
AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')
# Hooks of mmambaout.engine: every run gets the first (whatever it loads may be a published
# whole model), every training run the next two; testing and resuming, which need the whole
# model from the checkpoint (fine-tuning with load_from does not), the last.
CONVERSION_HOOK = 'ConvertBackboneCheckpointHook'
TRAINING_HOOKS = (CONVERSION_HOOK, 'ResumeRandomStateHook', 'StopOnNonFiniteLossHook')
CHECKPOINT_FIT_HOOK = 'RefuseMismatchedCheckpointHook'


def log_warning(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


# ---------------------------------------------------------------- command line

def add_common_arguments(parser) -> None:
    """The flags train.py and test.py share (as mmdet's and mmseg's tools)."""
    parser.add_argument('--work-dir', help='where logs, checkpoints and metrics go '
                        '(default: the config file\'s work_dir, else work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings: key=value pairs, e.g. '
                        'model.backbone.init_cfg=None or train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument(TRUST_FLAG, action='store_true',
                        help='unpickle the checkpoint to load (test.py: CHECKPOINT; train.py: '
                        '--resume PATH or load_from) fully although it is outside the work dir; '
                        'unpickling runs any code the file carries: only for files you trust')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank (older).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_args(parser, argv=None):
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


# ---------------------------------------------------------------- config

def toolbox_of(cfg: Config) -> str:
    """'mmdet' or 'mmseg', from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f"default_scope must be one of {TOOLBOXES} (set by the toolbox's "
                         f'default_runtime base config), got {scope!r}.')
    return scope


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Read a config, apply --cfg-options; work dir: CLI, else the config's, else by file name."""
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir:
        cfg.work_dir = work_dir
    elif not cfg.get('work_dir'):
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    toolbox_of(cfg)
    return cfg


def configure_training(cfg: Config, amp: bool = False, auto_scale_lr: bool = False,
                       resume: Optional[str] = None, trust_checkpoint: bool = False) -> None:
    """Apply train.py's flags, add the hooks of ``mmambaout.engine``, check the files the run
    needs, choose which checkpoints may be unpickled, adapt the run to the machine."""
    if amp:
        enable_amp(cfg)
    if auto_scale_lr:
        enable_auto_scale_lr(cfg)
    set_resume(cfg, resume)
    add_custom_hooks(cfg, TRAINING_HOOKS)
    if resume is not None:
        add_custom_hooks(cfg, [CHECKPOINT_FIT_HOOK])
    check_pretrained_files(cfg.model)
    validated = ['val_dataloader'] if cfg.get('val_cfg') else []  # the runner's rule
    check_dataset_files(cfg, ['train_dataloader', *validated])
    use_checkpoint_loader(cfg.work_dir, trusted_checkpoints(cfg, trust_checkpoint))
    adapt_to_machine(cfg)


def configure_testing(cfg: Config, checkpoint: str, out: Optional[str] = None,
                      show: bool = False, show_dir: Optional[str] = None,
                      wait_time: float = 2., tta: bool = False,
                      trust_checkpoint: bool = False) -> None:
    """Apply test.py's flags, refuse a checkpoint that does not fit the model, check the files
    the run needs, choose which checkpoints may be unpickled, adapt the run to the machine."""
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f"Checkpoint '{checkpoint}' does not exist.")
    cfg.load_from = checkpoint
    add_custom_hooks(cfg, [CONVERSION_HOOK, CHECKPOINT_FIT_HOOK])
    if show or show_dir:
        enable_visualization(cfg, show, show_dir, wait_time)
    if tta:
        use_tta(cfg)
    if out:
        add_dump_metric(cfg, out)
    check_dataset_files(cfg, ['test_dataloader'])
    use_checkpoint_loader(cfg.work_dir, trusted_checkpoints(cfg, trust_checkpoint))
    adapt_to_machine(cfg)


def enable_amp(cfg: Config) -> None:
    """--amp: OptimWrapper → AmpOptimWrapper with a dynamic loss scale."""
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        log_warning('AMP training is already enabled in the config.')
        return
    if wrapper != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, got {wrapper}.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    """--auto-scale-lr: scale the lr by (actual batch) / auto_scale_lr.base_batch_size."""
    if not {'enable', 'base_batch_size'} <= set(cfg.get('auto_scale_lr') or {}):
        raise ValueError('--auto-scale-lr needs auto_scale_lr = dict(enable=..., '
                         'base_batch_size=...) in the config.')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """--resume: 'auto' continues from the work dir's latest checkpoint, a path from that file."""
    if resume is None:
        return
    cfg.resume = True
    cfg.load_from = None if resume == 'auto' else resume


def add_custom_hooks(cfg: Config, hook_types) -> None:
    """Append a hook of each type to ``custom_hooks``, unless the config lists one already."""
    hooks = list(cfg.get('custom_hooks') or [])
    listed = {hook.get('type') for hook in hooks}
    cfg.custom_hooks = hooks + [dict(type=name) for name in hook_types if name not in listed]


def trusted_checkpoints(cfg: Config, trust_checkpoint: bool) -> list:
    """With --trust-checkpoint, the checkpoint the run loads (the work dir's are trusted anyway)."""
    return [cfg.load_from] if trust_checkpoint and cfg.get('load_from') else []


def pretrained_checkpoints(node, key: str) -> Iterator[Tuple[str, str]]:
    """(config key of the init_cfg, checkpoint path) of every ``Pretrained`` init_cfg in a
    model config."""
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and 'checkpoint' in node:
            yield key, node['checkpoint']
        for name, value in node.items():
            yield from pretrained_checkpoints(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for value in node:  # a list of init_cfgs: name the list, which can be set to None whole
            yield from pretrained_checkpoints(value, key)


def check_pretrained_files(model_cfg: dict) -> None:
    """Check that every pretrained checkpoint is there and reads weights-only; download one
    named by URL first unless torch.hub's cache holds it (in the first process of a machine).

    Raises FileNotFoundError for a missing file, CheckpointDownloadError for a failed download,
    and the backbone's errors for a file it would refuse. The backbone would raise them when the
    runner initialises weights, but only after building the datasets (minutes on COCO); checked
    here, the run stops at once.
    """
    # Under torchrun one process per machine downloads; the others skip URLs here and meet it
    # when the process group starts, after this check, and then read the cached copy.
    downloads = int(os.environ.get('LOCAL_RANK', 0)) == 0
    for key, path in pretrained_checkpoints(model_cfg, 'model'):
        scratch = f'train from scratch with --cfg-options {key}=None'
        if is_url(path):
            if not downloads:
                continue
            try:
                path = download_checkpoint(path)
            except CheckpointDownloadError as error:
                message = f'{error} ({key}.checkpoint); or {scratch}.'
                raise CheckpointDownloadError(message) from error
        elif '://' in path:  # torchvision://, open-mmlab://, ...: mmengine's own loaders
            continue
        elif not osp.isfile(path):
            raise FileNotFoundError(
                f"Pretrained checkpoint '{path}' ({key}.checkpoint) does not exist. Put the "
                "ImageNet weights there (the config's `pretrained` variable names the file), or "
                f'{scratch}.')
        read_pretrained(path, mmap=True)


def enable_visualization(cfg: Config, show: bool, show_dir: Optional[str],
                         wait_time: float) -> None:
    """--show / --show-dir: draw predictions with the config's visualization hook."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ValueError('--show and --show-dir need default_hooks.visualization in the config '
                         "(mmdet's DetVisualizationHook or mmseg's SegVisualizationHook).")
    hook.draw = True
    if show:
        hook.show = True
        hook.wait_time = wait_time
    if show_dir:
        # mmdet's hook writes every image itself, under work_dir/<timestamp>/show_dir. mmseg's
        # hands every `interval`-th image (default 50th) to the visualizer, whose backends write
        # under its save_dir: there, draw every image, and under the work dir too.
        if toolbox_of(cfg) == 'mmdet':
            hook.test_out_dir = show_dir
        else:
            hook.interval = 1
            cfg.visualizer.save_dir = osp.join(cfg.work_dir, show_dir)


def use_tta(cfg: Config) -> None:
    """--tta: wrap the model in the config's ``tta_model``; test with ``tta_pipeline``."""
    missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
    if missing:
        raise ValueError(f'--tta needs {" and ".join(missing)} in the config.')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def add_dump_metric(cfg: Config, out: str) -> None:
    """--out: also dump the raw predictions to a pickle file, for offline evaluation."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must name a .pkl or .pickle file, got {out!r}.')
    metrics = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    cfg.test_evaluator = [*metrics, dict(type=DUMP_METRICS[toolbox_of(cfg)], out_file_path=out)]


# ---------------------------------------------------------------- machine

def adapt_to_machine(cfg: Config) -> None:
    """Without a GPU: fp32 instead of AMP, and CPU distributed runs."""
    if not torch.cuda.is_available():
        use_fp32_optim_wrapper(cfg)
        if cfg.launcher != 'none':
            use_cpu_distributed(cfg)


def use_fp32_optim_wrapper(cfg: Config) -> None:
    """AmpOptimWrapper asserts CUDA: train in fp32 with OptimWrapper, and say so."""
    optim_wrapper = cfg.get('optim_wrapper')
    if not optim_wrapper or optim_wrapper.get('type') != 'AmpOptimWrapper':
        return
    log_warning('No GPU: AmpOptimWrapper needs CUDA, so this run trains in fp32 with '
                'OptimWrapper (mixed precision is OFF).')
    optim_wrapper.type = 'OptimWrapper'
    for key in AMP_ONLY_KEYS:
        optim_wrapper.pop(key, None)


def use_cpu_distributed(cfg: Config) -> None:
    """Distributed run without a GPU: gloo backend, DDP without device ids, BN for SyncBN."""
    if cfg.launcher != 'pytorch':
        raise ValueError('Without a GPU only --launcher pytorch (tools/dist_train.sh, '
                         f"tools/dist_test.sh) runs distributed; mmengine's {cfg.launcher} "
                         'start-up selects a CUDA device.')
    dist_cfg = cfg.setdefault('env_cfg', ConfigDict()).setdefault('dist_cfg', ConfigDict())
    log_warning(f"No GPU: distributed backend 'gloo' instead of "
                f"'{dist_cfg.get('backend', 'nccl')}'.")
    dist_cfg.backend = 'gloo'
    # mmengine's default DDP wrapper passes device_ids=[LOCAL_RANK], which only GPU modules take.
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if replace_sync_bn(cfg.model):
        log_warning('No GPU: SyncBN layers become BN (SyncBatchNorm runs on GPUs only); '
                    'batch statistics are per process.')


def replace_sync_bn(node) -> bool:
    """Turn every ``type='SyncBN'`` in a config tree into 'BN'; True if there was one."""
    found = False
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            found = True
        values = node.values()
    elif isinstance(node, (list, tuple)):
        values = node
    else:
        return False
    for value in values:
        found |= replace_sync_bn(value)
    return found


# ---------------------------------------------------------------- runner

def init_cpu_process_group(cfg: Config) -> None:
    """mmengine's ``init_dist`` selects a CUDA device before starting the process group; without
    a GPU, start it here (from torchrun's RANK, WORLD_SIZE, MASTER_ADDR/PORT); the runner then
    finds it started."""
    dist_cfg = dict(cfg.env_cfg.dist_cfg)
    if dist_cfg.get('timeout') is not None:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    torch.distributed.init_process_group(**dist_cfg)


def build_runner(cfg: Config) -> Runner:
    """The toolbox's runner, built as its own tools build it."""
    toolbox = toolbox_of(cfg)
    importlib.import_module(f'{toolbox}.utils').register_all_modules(init_default_scope=False)
    if (cfg.launcher != 'none' and not torch.cuda.is_available()
            and not torch.distributed.is_initialized()):
        init_cpu_process_group(cfg)
    if 'runner_type' in cfg:
        return importlib.import_module(f'{toolbox}.registry').RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def run(cfg: Config, task: str) -> None:
    """Build the runner and call its ``train`` or ``test``; then close the process group, which
    mmengine leaves open (a gloo process then aborts at exit)."""
    runner = build_runner(cfg)
    try:
        getattr(runner, task)()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
