"""tools/dist_train.sh and tools/dist_test.sh with 2 processes on a machine without a GPU: two
gloo processes download the pretrained backbone once, train the toy detection config as one model
on different images, evaluate it together, then test the checkpoint with the predictions of a
single process."""
import os
import pickle
import re
import socket
import subprocess

import pytest
import torch

from helpers import REPO, TOY_DET_CONFIG, run_test, toy_options
from mmambaout.models.backbones import MambaOut

# Loaded by the runs through custom_imports: every rank saves its parameters before and after
# training (initialised and loaded: the pretrained backbone is in) and the ids of the images it
# trained on.
RANK_HOOK = '''
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def parameters(runner):
    model = getattr(runner.model, 'module', runner.model)  # inside DistributedDataParallel
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@HOOKS.register_module()
class SaveEveryRankHook(Hook):
    def before_train(self, runner):
        self.img_ids, self.start = [], parameters(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.img_ids += [sample.img_id for sample in data_batch['data_samples']]

    def after_train(self, runner):
        torch.save(dict(start=self.start, params=parameters(runner), img_ids=self.img_ids),
                   f'{runner.work_dir}/rank{get_rank()}.pth')
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_script(script: str, *args: str, pythonpath, torch_home) -> None:
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1', TORCH_HOME=str(torch_home),
               PYTHONPATH=os.pathsep.join(filter(None, (str(pythonpath),
                                                        os.environ.get('PYTHONPATH')))))
    result = subprocess.run(['bash', f'tools/{script}', *args], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def boxes_by_image(path) -> dict:
    """{img_id: (boxes, scores, labels)} from a --out file of mmdet's DumpDetResults."""
    with open(path, 'rb') as f:
        results = pickle.load(f)
    return {r['img_id']: tuple(r['pred_instances'][k] for k in ('bboxes', 'scores', 'labels'))
            for r in results}


@pytest.mark.slow
def test_two_processes_train_evaluate_and_test_on_cpu(tmp_path, toy_root, server):
    work_dir, options = tmp_path / 'work', toy_options(toy_root)
    torch.manual_seed(0)
    # each answer waits 5 s: a second process starting the same download would ask meanwhile
    pretrained = MambaOut('femto').state_dict()
    url = server.serve('mambaout_femto.pth', pretrained, delay=5)
    (tmp_path / 'save_every_rank.py').write_text(RANK_HOOK)
    config = tmp_path / 'toy_with_rank_hook.py'
    config.write_text(f"_base_ = [{TOY_DET_CONFIG!r}]\n"
                      "custom_imports = dict(imports=['mmambaout', 'save_every_rank'], "
                      "allow_failed_imports=False)\n"
                      "custom_hooks = [dict(type='SaveEveryRankHook')]\n"
                      "model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
                      f"type='Pretrained', checkpoint={url!r})))\n")
    run_script('dist_train.sh', str(config), '2', '--work-dir', str(work_dir), '--cfg-options',
               *options, pythonpath=tmp_path, torch_home=tmp_path / 'torch_home')
    (log, ) = work_dir.glob('*/*.log')  # rank 0 writes it
    text = log.read_text()
    assert 'Distributed training: True' in text and 'GPU number: 2' in text  # 2 processes
    # the first process downloaded the file; the other read its cached copy
    assert server.requests == ['mambaout_femto.pth']
    assert f'backbone tensors from {url}' in text
    assert 'Epoch(train) [1][2/2]' in text  # 8 images, 2 per process and step: 2 steps
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\] .*coco/bbox_mAP', text)  # 2 images, 1 each
    # one model: after two steps on different images, both ranks hold the same weights
    ranks = [torch.load(work_dir / f'rank{rank}.pth') for rank in (0, 1)]
    # 4 images each (7 with objects, padded to 8 by the sampler): not the same ones
    assert len(ranks[0]['img_ids']) == len(ranks[1]['img_ids']) == 4
    assert set(ranks[0]['img_ids']) != set(ranks[1]['img_ids'])
    assert ranks[0]['params'].keys() == ranks[1]['params'].keys()
    for name, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][name]), name
    # ... and not the weights they started from, the downloaded backbone's: every tensor moved,
    # norms and biases too (no weight decay on them: only gradients move them)
    start = ranks[0]['start']
    for name, value in pretrained.items():
        assert torch.equal(start[f'backbone.{name}'], value), name
    assert start.keys() == ranks[0]['params'].keys()
    unmoved = [name for name, value in start.items()
               if torch.equal(value, ranks[0]['params'][name])]
    assert not unmoved, f'{len(unmoved)} of {len(start)} tensors kept their start: {unmoved[:5]}'

    run_script('dist_test.sh', TOY_DET_CONFIG, str(work_dir / 'epoch_1.pth'), '2',
               '--work-dir', str(work_dir), '--out', str(tmp_path / 'two.pkl'),
               '--cfg-options', *options, pythonpath=tmp_path,
               torch_home=tmp_path / 'torch_home')
    (metrics, ) = work_dir.glob('*/*.json')
    assert 'coco/bbox_mAP' in metrics.read_text()
    # the two processes' predictions, gathered, are those of one process
    run_test(tmp_path / 'single', work_dir / 'epoch_1.pth', *options,
             flags=['--trust-checkpoint', '--out', str(tmp_path / 'one.pkl')])
    two, one = boxes_by_image(tmp_path / 'two.pkl'), boxes_by_image(tmp_path / 'one.pkl')
    assert two.keys() == one.keys() and len(one) == 2
    for img_id, (boxes, scores, labels) in one.items():
        assert len(boxes) > 0, img_id
        torch.testing.assert_close(two[img_id][0], boxes, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(two[img_id][1], scores, rtol=1e-4, atol=1e-5)
        assert torch.equal(two[img_id][2], labels)
