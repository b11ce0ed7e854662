"""End to end, as a user: tools/train.py trains the toy UperNet on a small generated toy ADE20K
(conftest's session-wide training), tools/test.py evaluates the checkpoint (single-scale and
--tta), and the mIoU they write is far above what the untrained model gets; --tta predicts what
the mean of its views' class probabilities, each view's flip undone, predicts."""
import pickle

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import DATASETS

from helpers import TOY_SEG_CONFIG, log_of, metrics_of, run_tool
from mmambaout.analysis.models import build_model

# Untrained weights (3 seeds, tools/test.py on the full toy validation split) get mIoU 0.0-0.3;
# one class predicted everywhere gets about 100/7 = 14 at most. The toy training (20 iterations)
# reaches 82 (single-scale) and 89 (--tta); 40 iterations reached 91 and 93.
MIOU_FLOOR = 50.
# A pixel's class may differ from the reference's only where the reference's two most probable
# classes are this close: mmseg flips a view's logits back before resizing them to the image,
# the reference after, which agrees up to rounding.
NEAR_TIE = 1e-4


@pytest.fixture(scope='module')
def tta_run(trained_toy_segmentor, tmp_path_factory):
    """tools/test.py --tta --out on the trained checkpoint: its work dir."""
    trained, work_dir = trained_toy_segmentor, tmp_path_factory.mktemp('tta')
    # The checkpoint lies outside the test's work dir: it is ours, so trust it.
    run_tool('tools/test.py', TOY_SEG_CONFIG, trained.checkpoint, '--trust-checkpoint',
             '--work-dir', work_dir, '--tta', '--out', work_dir / 'preds.pkl',
             '--cfg-options', *trained.data_options)
    return work_dir


@pytest.mark.slow
def test_toy_training_then_evaluation(trained_toy_segmentor, tta_run, tmp_path):
    trained = trained_toy_segmentor
    assert f'Iter(val) [{trained.num_val}/{trained.num_val}]' in log_of(trained.work_dir)

    single_scale = tmp_path / 'single_scale'
    run_tool('tools/test.py', TOY_SEG_CONFIG, trained.checkpoint, '--trust-checkpoint',
             '--work-dir', single_scale, '--show-dir', 'drawn',
             '--cfg-options', *trained.data_options)
    mious = {}
    for name, work_dir, model in (('single_scale', single_scale, 'EncoderDecoder'),
                                  ('tta', tta_run, 'SegTTAModel')):
        mious[name] = metrics_of(work_dir)['mIoU']
        assert mious[name] > MIOU_FLOOR, name
        # the model the run built, from the config mmengine dumped for it
        (dumped, ) = work_dir.glob('*/vis_data/config.py')
        assert Config.fromfile(dumped).model.type == model, name
    assert mious['tta'] != mious['single_scale']  # scales and flips: not the one pass
    # --show-dir: mmseg's visualizer draws every validation image (in WORK_DIR/SHOW_DIR)
    assert len(list(single_scale.glob('drawn/vis_data/vis_image/*.png'))) == trained.num_val


@pytest.mark.slow
def test_tta_averages_its_views_with_their_flips_undone(trained_toy_segmentor, tta_run):
    """The reference, by hand: every view of the config's tta_pipeline through the plain
    segmentor with no flip in its metadata, the mirrored views' logits flipped back here, the
    class probabilities averaged."""
    trained = trained_toy_segmentor
    cfg = Config.fromfile(TOY_SEG_CONFIG)
    model = build_model(cfg).eval()
    model.load_state_dict(torch.load(trained.checkpoint, weights_only=False)['state_dict'])
    dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=str(trained.data_root),
                                  pipeline=cfg.tta_pipeline))
    with open(tta_run / 'preds.pkl', 'rb') as f:
        predicted = {p['img_path']: p['pred_sem_seg']['data'][0] for p in pickle.load(f)}
    assert len(predicted) == len(dataset) == trained.num_val

    for index in range(len(dataset)):
        views = dataset[index]
        samples = views['data_samples']
        assert sum(s.flip for s in samples) == len(samples) // 2 > 0
        probabilities = 0
        for inputs, sample in zip(views['inputs'], samples):
            mirrored = sample.flip
            assert not mirrored or sample.flip_direction == 'horizontal'
            sample.set_metainfo(dict(flip=False))
            with torch.no_grad():
                (result, ) = model.test_step(dict(inputs=[inputs], data_samples=[sample]))
            logits = result.seg_logits.data
            probabilities = probabilities + (logits.flip(-1) if mirrored else logits).softmax(0)
        top2 = (probabilities / len(samples)).topk(2, dim=0).values
        differ = predicted[samples[0].img_path] != probabilities.argmax(0)
        assert ((top2[0] - top2[1])[differ] < NEAR_TIE).all(), (
            f'{samples[0].img_path}: {int(differ.sum())} of {differ.numel()} pixels differ')
