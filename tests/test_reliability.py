"""Bad input and unusual data through tools/train.py and tools/test.py, on the toy detection
config: every failure names the file at fault and the fix; unusual images train."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.models import DetTTAModel
from mmengine.model import BaseModel
from PIL import Image

from helpers import log_of, metrics_of, run_test, run_train, toy_options
from mmambaout.datasets import TOY_COCO_CLASSES
from mmambaout.engine import NonFiniteLossError
from mmambaout.engine.hooks import checkpoint_misfit, receiving_module
from mmambaout.models.backbones.mambaout import MambaOut


# ---------------------------------------------------------------- hand-made sets

def write_rectangles_coco(root: Path, size, num_images: int = 4, with_objects: bool = True):
    """A COCO set in the toy layout (train and val alike): ``num_images`` grey images of
    ``size`` (h, w), each with one red rectangle (box and polygon) unless ``with_objects`` is
    False."""
    h, w = size
    y0, x0, y1, x1 = h // 4, w // 4, h - h // 4, w - w // 4
    pixels = np.full((h, w, 3), 120, np.uint8)
    if with_objects:
        pixels[y0:y1, x0:x1] = (200, 30, 30)
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(TOY_COCO_CLASSES)]
    for split in ('train', 'val'):
        (root / split).mkdir(parents=True)
        images, annotations = [], []
        for index in range(1, num_images + 1):
            Image.fromarray(pixels).save(root / split / f'{index}.png')
            images.append(dict(id=index, file_name=f'{index}.png', height=h, width=w))
            if with_objects:
                annotations.append(dict(
                    id=index, image_id=index, category_id=2, iscrowd=0,
                    bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0),
                    segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
        write_json(root / 'annotations' / f'instances_{split}.json',
                   dict(images=images, annotations=annotations, categories=categories))


def write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def pretrained_backbone(checkpoint: Path) -> list:
    """--cfg-options that initialise the toy config's backbone from ``checkpoint``."""
    return ['model.backbone.init_cfg._delete_=True', 'model.backbone.init_cfg.type=Pretrained',
            f'model.backbone.init_cfg.checkpoint={checkpoint}']


# ---------------------------------------------------------------- unusual images

@pytest.mark.slow
@pytest.mark.parametrize('case', ['sides_not_multiples_of_32', 'smaller_than_total_stride',
                                  'no_objects'])
def test_unusual_images_train_and_validate(case, tmp_path, toy_root):
    """Unpadded 100x(62-100) px inputs; 20x24 px inputs (the backbone's last stage sees 1x1);
    batches with no object at all. mmdet's COCO config drops images under 32 px and images
    without objects from training; the tests let them through."""
    data, image_size, options = toy_root, 100, ['model.data_preprocessor.pad_size_divisor=1']
    if case == 'smaller_than_total_stride':
        data, image_size = tmp_path / 'data', 24
        write_rectangles_coco(data, (20, 24))
        options.append('train_dataloader.dataset.filter_cfg.min_size=0')
    elif case == 'no_objects':
        data, options = tmp_path / 'data', ['train_dataloader.dataset.filter_cfg=None']
        write_rectangles_coco(data, (64, 80), with_objects=False)
    run_train(tmp_path / 'work', *toy_options(data, image_size=image_size), *options)
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    assert 'coco/bbox_mAP' in log_of(tmp_path / 'work')  # validation ran to the end


# ---------------------------------------------------------------- dataset files

def test_missing_data_root_names_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        run_train(tmp_path / 'work', *toy_options(tmp_path / 'nowhere'))
    message = str(error.value)
    assert f'{tmp_path}/nowhere/annotations/instances_train.json' in message
    assert 'annotations/instances_train2017.json' in message  # the standard layout
    assert 'train_dataloader.dataset.data_root=PATH' in message


@pytest.mark.parametrize('content, complaint', [
    ('<html>404 Not Found</html>', 'is not valid JSON'),
    ({'annotations': [], 'categories': []}, "is not a COCO annotation file: it has no 'images'"),
    ({'images': [], 'categories': []}, "is not a COCO annotation file: it has no 'annotations'"),
    ([], "is not a COCO annotation file: it has no 'images', 'annotations', 'categories'"),
], ids=['not_json', 'no_images', 'no_annotations', 'a_list'])
def test_malformed_coco_json_names_the_file(content, complaint, tmp_path):
    write_rectangles_coco(tmp_path / 'data', (32, 32))
    ann_file = tmp_path / 'data' / 'annotations' / 'instances_train.json'
    ann_file.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError) as error:
        run_train(tmp_path / 'work', *toy_options(tmp_path / 'data'))
    assert f"Annotation file '{ann_file}' {complaint}" in str(error.value)


def test_missing_image_names_image_and_annotation_file(tmp_path):
    write_rectangles_coco(tmp_path / 'data', (32, 32))
    (tmp_path / 'data' / 'val' / '3.png').unlink()
    with pytest.raises(FileNotFoundError) as error:
        run_train(tmp_path / 'work', *toy_options(tmp_path / 'data'))
    message = str(error.value)
    assert f"1 of the 4 images listed in '{tmp_path}/data/annotations/instances_val.json'" in (
        message)
    assert f'{tmp_path}/data/val/3.png' in message


# ---------------------------------------------------------------- checkpoints

def truncated_copy(source: Path, destination: Path) -> Path:
    data = source.read_bytes()
    destination.write_bytes(data[:len(data) // 2])
    return destination


@pytest.mark.parametrize('tool', ['train.py --resume', 'test.py'])
def test_truncated_checkpoint_is_named(tool, tmp_path, toy_root, toy_detector_state):
    checkpoint = truncated_copy(toy_detector_state, tmp_path / 'cut.pth')
    with pytest.raises(RuntimeError) as error:
        if tool == 'test.py':
            run_test(tmp_path / 'work', checkpoint, *toy_options(toy_root))
        else:
            run_train(tmp_path / 'work', *toy_options(toy_root),
                      flags=['--resume', str(checkpoint)])
    assert f"Cannot read checkpoint '{checkpoint}'" in str(error.value)
    assert 'truncated or corrupted' in str(error.value)


def test_truncated_pretrained_backbone_is_named(tmp_path, toy_root):
    whole = tmp_path / 'femto.pth'
    torch.save(MambaOut(arch='femto').state_dict(), whole)
    checkpoint = truncated_copy(whole, tmp_path / 'cut.pth')
    with pytest.raises(RuntimeError) as error:
        run_train(tmp_path / 'work', *toy_options(toy_root), *pretrained_backbone(checkpoint))
    assert f"Cannot read checkpoint '{checkpoint}'" in str(error.value)
    assert 'truncated' in str(error.value)


def test_pretrained_backbone_of_another_arch_names_key_and_shapes(tmp_path, toy_root):
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(MambaOut(arch='tiny').state_dict(), checkpoint)
    with pytest.raises(ValueError) as error:
        run_train(tmp_path / 'work', *toy_options(toy_root), *pretrained_backbone(checkpoint))
    assert (f"Checkpoint '{checkpoint}' does not fit MambaOut: 'downsample_layers.0.conv1.weight' "
            'has shape (48, 3, 3, 3) in the file but (24, 3, 3, 3) in the model') in (
                str(error.value))


def test_detector_checkpoint_of_another_arch_names_key_and_shapes(tmp_path, toy_root,
                                                                   toy_detector_state):
    """mmengine would only warn and test a partly random model."""
    state = torch.load(toy_detector_state)
    state['state_dict']['backbone.stages.3.0.fc2.weight'] = torch.zeros(288, 100)
    torch.save(state, toy_detector_state)
    with pytest.raises(ValueError) as error:
        run_test(tmp_path / 'work', toy_detector_state, *toy_options(toy_root))
    assert (f"Checkpoint '{toy_detector_state}' does not fit the model of this config: "
            "'backbone.stages.3.0.fc2.weight' has shape (288, 100) in the file but (288, 768) "
            'in the model') in str(error.value)


def test_fitting_detector_checkpoint_tests(tmp_path, toy_root, toy_detector_state):
    run_test(tmp_path / 'work', toy_detector_state, *toy_options(toy_root))
    assert 'coco/bbox_mAP' in metrics_of(tmp_path / 'work')


def test_checkpoint_misfit_names_first_other_shape_then_first_missing_tensor():
    own = {'a': torch.zeros(2), 'b': torch.zeros(3), 'bn.num_batches_tracked': torch.tensor(0)}
    assert checkpoint_misfit(own, {'a': torch.zeros(2), 'b': torch.zeros(3)}) is None
    assert checkpoint_misfit(own, {'a': torch.zeros(2)}) == (
        "'b' is not in the file (1 of the model's 3 tensors are missing)")
    assert checkpoint_misfit(own, {'b': torch.zeros(4), 'extra': torch.zeros(1)}) == (
        "'b' has shape (4,) in the file but (3,) in the model (1 tensors differ)")


def test_checkpoint_fills_the_module_inside_test_time_augmentation():
    class Detector(BaseModel):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(2, 2)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return self.head(inputs)

    model = DetTTAModel(module=Detector())
    assert receiving_module(model) is model.module  # its keys lack 'module.', as in the file


# ---------------------------------------------------------------- NaN loss

@pytest.mark.slow
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, toy_root):
    work_dir = tmp_path / 'work'
    with pytest.raises(NonFiniteLossError) as error:
        run_train(work_dir, *toy_options(toy_root, epochs=4, batch_size=1),
              'optim_wrapper.optimizer.lr=1e10', 'optim_wrapper.clip_grad=None',
              'default_hooks.checkpoint.by_epoch=False', 'train_cfg.val_interval=100')
    message = str(error.value)
    bad_iter = int(message.split('at iteration ')[1].split(' ')[0])
    last_good = work_dir / f'iter_{bad_iter - 1}.pth'
    assert 'The loss became non-finite' in message and 'loss=nan' in message.lower()
    assert f'The last good checkpoint is {last_good}' in message
    saved = [int(path.stem[len('iter_'):]) for path in work_dir.glob('iter_*.pth')]
    assert max(saved) == bad_iter - 1  # numerically: iter_9 comes before iter_10
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(last_good)
    weights = torch.load(last_good, weights_only=False)['state_dict']
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
