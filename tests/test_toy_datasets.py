"""The toy datasets: reproducible, in real formats, read unchanged by pycocotools, mmdet, mmseg."""
import colorsys
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmambaout.datasets import (TOY_ADE_CLASSES, TOY_ADE_LABEL_IDS, TOY_COCO_CLASSES,
                                TOY_LONGRANGE_CLASSES, ensure_toy_ade, ensure_toy_coco,
                                ensure_toy_longrange, make_toy_ade, make_toy_coco,
                                make_toy_longrange)
from mmambaout.datasets.toy_ade import CLASS_LOOKS
from mmambaout.datasets.toy_coco import render_sample as render_coco_sample
from mmambaout.datasets.toy_longrange import DISTANCE, MARKER_RGB, STRIP_HEIGHT, WIDTH

REPO = Path(__file__).resolve().parents[1]
NUM_IMAGES = dict(train=6, val=3)


def small_set(tmp_path_factory, make):
    root = tmp_path_factory.mktemp(make.__name__)
    make(root, num_train=NUM_IMAGES['train'], num_val=NUM_IMAGES['val'])
    return root


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return small_set(tmp_path_factory, make_toy_coco)


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    return small_set(tmp_path_factory, make_toy_ade)


@pytest.fixture(scope='module')
def longrange_root(tmp_path_factory):
    return small_set(tmp_path_factory, make_toy_longrange)


def file_bytes(root: Path):
    return {path.relative_to(root): path.read_bytes()
            for path in sorted(root.rglob('*')) if path.is_file()}


def read_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'), dtype=np.float32) / 255


def read_labels(path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == 'L'
    return np.asarray(image)


def iou(a, b) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize('make', [make_toy_coco, make_toy_ade, make_toy_longrange])
def test_byte_for_byte_deterministic(tmp_path, make):
    for name, seed in (('a', 1), ('b', 1), ('c', 2)):
        make(tmp_path / name, num_train=3, num_val=2, seed=seed)
    a, b, c = (file_bytes(tmp_path / name) for name in 'abc')
    assert sum(path.suffix == '.jpg' for path in a) == 5
    assert a == b
    assert a.keys() == c.keys() and all(a[p] != c[p] for p in a if p.suffix == '.jpg')


@pytest.mark.parametrize('ensure', [ensure_toy_coco, ensure_toy_ade, ensure_toy_longrange])
def test_ensure_generates_only_when_missing(tmp_path, ensure):
    root = ensure(tmp_path / 'set', num_train=2, num_val=1)
    image = next(path for path in file_bytes(root) if path.suffix == '.jpg')
    (root / image).unlink()
    ensure(root, num_train=2, num_val=1)
    assert not (root / image).exists()


@pytest.mark.parametrize('split', ['train', 'val'])
def test_toy_coco_pycocotools_round_trip(coco_root, split):
    from pycocotools.coco import COCO
    coco = COCO(str(coco_root / 'annotations' / f'instances_{split}.json'))
    assert [cat['name'] for cat in coco.loadCats(coco.getCatIds())] == list(TOY_COCO_CLASSES)
    assert coco.getImgIds() == list(range(1, NUM_IMAGES[split] + 1))
    num_objects = []
    for image_id in coco.getImgIds():
        info = coco.imgs[image_id]
        image = read_rgb(coco_root / split / info['file_name'])
        assert image.shape == (info['height'], info['width'], 3)
        assert 160 <= min(image.shape[:2]) and max(image.shape[:2]) <= 256
        _, labels, masks = render_coco_sample(0, split, image_id - 1)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert [ann['category_id'] for ann in anns] == [label + 1 for label in labels]
        num_objects.append(len(anns))
        for ann, mask in zip(anns, masks):
            assert ann['iscrowd'] == 0
            assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann['segmentation'])
            decoded = coco.annToMask(ann).astype(bool)
            assert iou(decoded, mask) > 0.9
            ys, xs = np.nonzero(decoded)
            assert ann['area'] == mask.sum()
            assert ann['bbox'] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
    assert num_objects[0] == 0 and all(1 <= n <= 4 for n in num_objects[1:])


def touch(a, b) -> bool:
    """Whether two masks have 4-neighbouring pixels."""
    return bool((a[:, 1:] & b[:, :-1]).any() or (a[:, :-1] & b[:, 1:]).any()
                or (a[1:] & b[:-1]).any() or (a[:-1] & b[1:]).any())


def test_toy_coco_annotates_visible_parts(coco_root):
    """The masks of an image are disjoint (an occluded object keeps only its visible part), and
    some touch: occlusion occurs in the set."""
    from pycocotools.coco import COCO
    coco = COCO(str(coco_root / 'annotations' / 'instances_train.json'))
    touching = 0
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        masks = [coco.annToMask(ann).astype(bool) for ann in anns]
        assert np.sum(masks, axis=0, dtype=int).max() <= 1
        touching += sum(touch(a, b) for i, a in enumerate(masks) for b in masks[i + 1:])
    assert touching > 0


def test_toy_coco_masks_match_images(coco_root):
    """Objects are vivid, the background dull: a shifted or misdrawn mask would mix the two."""
    from pycocotools.coco import COCO
    coco = COCO(str(coco_root / 'annotations' / 'instances_train.json'))
    for image_id, info in coco.imgs.items():
        image = read_rgb(coco_root / 'train' / info['file_name'])
        vivid = image.max(2) - image.min(2) > 0.15
        objects = np.zeros(vivid.shape, bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            mask = coco.annToMask(ann).astype(bool)
            assert vivid[mask].mean() > 0.7
            objects |= mask
        assert vivid[~objects].mean() < 0.05


def test_toy_coco_loads_in_mmdet_unchanged(coco_root):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations
    from pycocotools.coco import COCO
    dataset = CocoDataset(
        data_root=str(coco_root), ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=TOY_COCO_CLASSES),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)])
    coco = COCO(str(coco_root / 'annotations' / 'instances_train.json'))
    assert len(dataset) == NUM_IMAGES['train']
    for sample in map(dataset.__getitem__, range(len(dataset))):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=sample['img_id']))
        assert len(sample['gt_bboxes']) == len(anns)
        assert sample['gt_bboxes_labels'].tolist() == [ann['category_id'] - 1 for ann in anns]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (ann['bbox'] for ann in anns)]
        assert sample['gt_bboxes'].tensor.tolist() == boxes
        masks = sample['gt_masks'].masks
        assert masks.shape == (len(anns),) + sample['img'].shape[:2]
        for mask, ann in zip(masks, anns):
            assert (mask == coco.annToMask(ann)).all()
    assert len(dataset[0]['gt_bboxes']) == 0


def test_toy_ade_loads_in_mmseg_with_reduced_labels(ade_root):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations
    ade_classes = ADE20KDataset.METAINFO['classes']
    assert [ade_classes[k - 1] for k in TOY_ADE_LABEL_IDS] == list(TOY_ADE_CLASSES)
    for split, folder in (('train', 'training'), ('val', 'validation')):
        dataset = ADE20KDataset(
            data_root=str(ade_root),
            data_prefix=dict(img_path=f'images/{folder}', seg_map_path=f'annotations/{folder}'),
            pipeline=[LoadImageFromFile(), LoadAnnotations(reduce_zero_label=True)])
        assert len(dataset) == NUM_IMAGES[split]
        for sample in map(dataset.__getitem__, range(len(dataset))):
            assert Path(sample['img_path']).stem == Path(sample['seg_map_path']).stem
            raw = read_labels(sample['seg_map_path'])
            assert 128 <= min(raw.shape) and max(raw.shape) <= 192
            assert set(np.unique(raw)) <= {0, *TOY_ADE_LABEL_IDS}
            assert 0 < (raw > 0).mean() and (raw == 0).mean() < 0.2
            assert (sample['gt_seg_map'] == np.where(raw == 0, 255, raw.astype(np.int64) - 1)).all()


def test_toy_ade_regions_show_their_class_colour(ade_root):
    """Each class region's mean colour is nearest to that class's base colour."""
    base_rgb = {k: np.array(colorsys.hsv_to_rgb(*look[1])) for k, look in CLASS_LOOKS.items()}
    meta = json.loads((ade_root / 'meta.json').read_text())
    assert meta['label_ids'] == list(TOY_ADE_LABEL_IDS)
    for record in meta['training']:
        image = read_rgb(ade_root / 'images' / 'training' / f"{record['stem']}.jpg")
        labels = read_labels(ade_root / 'annotations' / 'training' / f"{record['stem']}.png")
        assert record['label_ids'] == sorted(set(np.unique(labels).tolist()) - {0})
        assert len(record['label_ids']) >= 2
        for label_id in record['label_ids']:
            mean = image[labels == label_id].mean(0)
            assert min(base_rgb, key=lambda k: np.abs(base_rgb[k] - mean).sum()) == label_id


def distance_to_box(points_xy: np.ndarray, box) -> np.ndarray:
    """Euclidean distance of pixels to the nearest pixel of box [x0, y0, x1, y1) (end exclusive)."""
    x0, y0, x1, y1 = box
    nearest = np.clip(points_xy, (x0, y0), (x1 - 1, y1 - 1))
    return np.hypot(*(points_xy - nearest).T)


@pytest.mark.parametrize('folder', ['training', 'validation'])
def test_toy_longrange_marker_far_from_target(longrange_root, folder):
    meta = json.loads((longrange_root / 'meta.json').read_text())
    assert meta['classes'] == list(TOY_LONGRANGE_CLASSES) and meta['distance'] == DISTANCE
    for record in meta[folder]:
        image = read_rgb(longrange_root / 'images' / folder / f"{record['stem']}.jpg")
        labels = read_labels(longrange_root / 'annotations' / folder / f"{record['stem']}.png")
        assert image.shape == (STRIP_HEIGHT, WIDTH, 3)
        assert set(np.unique(labels)) == {0, record['label']}
        target = labels > 0
        assert target.sum() > 200
        target_xy = np.argwhere(target)[:, ::-1]
        assert distance_to_box(target_xy, record['marker_box']).min() >= DISTANCE
        x0, y0, x1, y1 = record['marker_box']
        marker_rgb = image[y0 + 2:y1 - 2, x0 + 2:x1 - 2].mean((0, 1))  # clear of JPEG ringing
        assert np.abs(marker_rgb - MARKER_RGB[record['label'] - 1]).max() < 0.08
        target_rgb = image[target].mean(0)
        assert np.ptp(target_rgb) < 0.05  # grey, whatever the class
        assert image[target].std() > 2 * image[~target].std()  # striped: stands out


def test_toy_longrange_loads_in_mmseg_with_reduced_labels(longrange_root):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations
    dataset = BaseSegDataset(
        data_root=str(longrange_root), metainfo=dict(classes=TOY_LONGRANGE_CLASSES),
        img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=[LoadImageFromFile(), LoadAnnotations(reduce_zero_label=True)])
    assert len(dataset) == NUM_IMAGES['val']
    for sample in map(dataset.__getitem__, range(len(dataset))):
        raw = read_labels(sample['seg_map_path'])
        assert (sample['gt_seg_map'] == np.where(raw == 0, 255, raw.astype(np.int64) - 1)).all()


@pytest.mark.slow
@pytest.mark.parametrize('name', ['toy_coco', 'toy_ade', 'toy_longrange'])
def test_cli_writes_where_asked(tmp_path, name):
    out = tmp_path / name
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'data' / f'make_{name}.py'), '--out', str(out),
         '--num-train', '2', '--num-val', '1', '--seed', '3'],
        capture_output=True, text=True, check=True)
    assert str(out) in result.stdout
    assert len(list(out.rglob('*.jpg'))) == 3
