"""What several test modules use: the tools, loaded or run as a user runs them, --cfg-options
for quick toy runs, a checkpoint server on 127.0.0.1, and VMamba's own key layout for released
whole models. Fixtures live in conftest.py."""
import functools
import http.server
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
TOY_DET_CONFIG = str(REPO / 'configs' / 'toy' / 'mask_rcnn_mambaout_femto_toy.py')
TOY_SEG_CONFIG = str(REPO / 'configs' / 'toy' / 'upernet_mambaout_femto_toy.py')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_tool(relative_path: str):
    """A tool's module, e.g. ``load_tool('tools/train.py').main([...])``."""
    spec = importlib.util.spec_from_file_location(Path(relative_path).stem,
                                                  REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(tool: str, *args, cwd=REPO, threads: int = None) -> str:
    """Run ``tool`` (a path under the repository) as a user would, in a process of its own,
    from ``cwd``, on ``threads`` threads if given; its stdout."""
    env = dict(os.environ, **({'OMP_NUM_THREADS': str(threads)} if threads else {}))
    result = subprocess.run([sys.executable, str(REPO / tool), *map(str, args)], cwd=cwd,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, f'{tool} failed:\n{result.stderr[-5000:]}'
    return result.stdout


def metrics_of(work_dir: Path) -> dict:
    """The metrics tools/test.py wrote (mmengine: WORK_DIR/<timestamp>/<timestamp>.json)."""
    (path, ) = Path(work_dir).glob('*/*.json')
    return json.loads(path.read_text())


def log_of(work_dir: Path) -> str:
    """The log of the one run in ``work_dir`` (mmengine: WORK_DIR/<timestamp>/<timestamp>.log)."""
    (path, ) = Path(work_dir).glob('*/*.log')
    return path.read_text()


# ---------------------------------------------------------------- quick toy detection runs

train_tool = load_tool('tools/train.py')
test_tool = load_tool('tools/test.py')


@functools.lru_cache()
def resize_steps() -> dict:
    """Dataloader → index of the Resize step in its pipeline (the lead tunes the toy config)."""
    cfg = Config.fromfile(TOY_DET_CONFIG)
    return {loader: next(i for i, step in enumerate(cfg[loader].dataset.pipeline)
                         if step.type == 'Resize') for loader in LOADERS}


def toy_options(data_root, image_size: int = 64, epochs: int = 1, batch_size: int = 2) -> list:
    """--cfg-options that train TOY_DET_CONFIG on the set under ``data_root`` quickly and
    reproducibly: small images, data loaded in the main process, a checkpoint and a validation
    every epoch."""
    val_ann = f'{data_root}/annotations/instances_val.json'
    options = [f'{loader}.{setting}' for loader in LOADERS for setting in (
        f'dataset.data_root={data_root}', 'num_workers=0', 'persistent_workers=False',
        f'batch_size={batch_size}',
        f'dataset.pipeline.{resize_steps()[loader]}.scale=({image_size},{image_size})')]
    return options + [
        f'val_evaluator.ann_file={val_ann}', f'test_evaluator.ann_file={val_ann}',
        f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
        'randomness.seed=0', 'randomness.deterministic=True']


def run_train(work_dir: Path, *options: str, flags=()) -> None:
    """tools/train.py on the toy detection config, in this process."""
    train_tool.main([TOY_DET_CONFIG, '--work-dir', str(work_dir), *flags,
                     '--cfg-options', *options])


def run_test(work_dir: Path, checkpoint, *options: str, flags=()) -> None:
    """tools/test.py on the toy detection config, in this process."""
    test_tool.main([TOY_DET_CONFIG, str(checkpoint), '--work-dir', str(work_dir), *flags,
                    '--cfg-options', *options])


# ---------------------------------------------------------------- a real HTTP server

class CheckpointServer:
    """An HTTP server on 127.0.0.1 (a free port) in this process: serves ``files`` by name and
    404 for other names; a name in ``cut`` is sent with its full Content-Length but only half
    its body, then the connection closes (a download that breaks off); a name in ``delays``
    is answered that many seconds late."""

    def __init__(self):
        self.files, self.cut, self.delays, self.requests = {}, set(), {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):  # HTTP/1.0: one request a connection
            def do_GET(self):
                name = self.path.lstrip('/')
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                time.sleep(server.delays.get(name, 0))
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if name in server.cut else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, name: str, checkpoint, cut: bool = False, delay: float = 0) -> str:
        """Serve ``torch.save(checkpoint)`` as ``name``; its URL."""
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self.files[name] = buffer.getvalue()
        self.delays[name] = delay
        if cut:
            self.cut.add(name)
        return f'http://127.0.0.1:{self.httpd.server_port}/{name}'

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- VMamba's released whole models

SMALL_VMAMBA = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), ssm_ratio=2.0, d_state=1)


def ours_to_vmamba(key: str) -> str:
    """A key of our VMamba backbone → VMamba's own (its Backbone_VSSM), written from VMamba's
    module layout: patch_embed = Sequential(conv, Permute, LN, Permute, GELU, conv, Permute, LN);
    layers.i = (blocks, downsample = Sequential(Permute, conv, Permute, LN)) with the
    downsampling into stage i + 1 at the end of layers.i; outnorm{i} on the outputs."""
    parts = key.split('.')
    if parts[0] == 'downsample_layers' and parts[1] == '0':
        index = {'conv1': 0, 'norm1': 2, 'conv2': 5, 'norm2': 7}[parts[2]]
        return f'patch_embed.{index}.{parts[3]}'
    if parts[0] == 'downsample_layers':
        index = {'conv': 1, 'norm': 3}[parts[2]]
        return f'layers.{int(parts[1]) - 1}.downsample.{index}.{parts[3]}'
    if parts[0] == 'stages':
        return '.'.join(['layers', parts[1], 'blocks', *parts[2:]])
    assert parts[0] in ('norm0', 'norm1', 'norm2', 'norm3'), key
    return '.'.join([f'outnorm{parts[0][-1]}', *parts[1:]])


def in_vmamba_layout(state: dict) -> dict:
    """A whole model's state dict as VMamba's own detector or segmentor names it."""
    return {('backbone.' + ours_to_vmamba(k[len('backbone.'):]) if k.startswith('backbone.')
             else k): v for k, v in state.items()}


def toy_vmamba_config(tmp_path: Path, task: str, arch: dict = SMALL_VMAMBA,
                      name: str = 'vmamba') -> Path:
    """The toy detection or segmentation config with a small VMamba, written to
    ``tmp_path/{task}_{name}_toy.py``."""
    dims = list(arch['dims'])
    if task == 'det':
        base, heads = TOY_DET_CONFIG, f'neck=dict(in_channels={dims})'
    else:
        base = TOY_SEG_CONFIG
        heads = (f'decode_head=dict(in_channels={dims}), '
                 f'auxiliary_head=dict(in_channels={dims[2]})')
    path = tmp_path / f'{task}_{name}_toy.py'
    path.write_text(f"_base_ = ['{base}']\n"
                    f"model = dict(backbone=dict(_delete_=True, type='VMamba', arch={arch!r}), "
                    f'{heads})\n')
    return path
