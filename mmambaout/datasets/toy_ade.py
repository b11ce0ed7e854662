"""A toy ADE20K: scenes of a few ADE20K classes as textured regions with smooth, wavy borders.

Layout, the real ADE20K one (mmseg's ``ADE20KDataset`` reads it unchanged)::

    ROOT/images/training/ADE_train_00000001.jpg    ROOT/annotations/training/ADE_train_00000001.png
    ROOT/images/validation/ADE_val_00000001.jpg    ROOT/annotations/validation/ADE_val_00000001.png
    ROOT/meta.json    (label ids and names used, classes present per image; written last)

Annotations are single-channel PNGs holding ADE20K label ids: 0 is "other" and k in 1..150 is
class k - 1 of ``ADE20KDataset.METAINFO['classes']`` (the dataset's ``reduce_zero_label`` maps k
to k - 1 and 0 to the ignore index 255). Only the ids in ``TOY_ADE_LABEL_IDS`` occur.

An image is 128-192 px a side and split into 3-6 warped Voronoi cells, each of a different toy
class: the cells' borders are smooth curves, not straight lines. Every class has its own colour
family and texture, so a small patch tells the class. Up to two small blobs of random colour and
texture are "other".
"""
import numpy as np

from ._render import (blob_mask, checker, ensure_generated, hsv_to_rgb, image_rng, make_seg_set,
                      paint, pixel_grid, random_texture, smooth_noise, stripes)

# ADE20K label id: (name, (hue, saturation, value), texture(rng, shape) of about ±1, contrast)
CLASS_LOOKS = {
    1: ('wall', (0.10, 0.25, 0.80), lambda rng, shape: stripes(shape, 8, np.pi / 2), 0.12),
    3: ('sky', (0.57, 0.45, 0.95), lambda rng, shape: smooth_noise(rng, shape, 40), 0.05),
    4: ('floor', (0.07, 0.60, 0.55), lambda rng, shape: checker(shape, 14, 0.), 0.2),
    5: ('tree', (0.30, 0.65, 0.35), lambda rng, shape: smooth_noise(rng, shape, 3), 0.35),
    7: ('road', (0.00, 0.00, 0.45), lambda rng, shape: smooth_noise(rng, shape, 1), 0.12),
    10: ('grass', (0.24, 0.70, 0.70), lambda rng, shape: stripes(shape, 3, 0.), 0.25),
    22: ('water', (0.62, 0.75, 0.55), lambda rng, shape: stripes(shape, 6, np.pi / 4), 0.2),
}
TOY_ADE_LABEL_IDS = tuple(CLASS_LOOKS)
TOY_ADE_CLASSES = tuple(name for name, *_ in CLASS_LOOKS.values())


def region_labels(rng, shape) -> np.ndarray:
    """A label map of 3-6 warped Voronoi cells, each of a different toy class."""
    num_cells = rng.integers(3, 7)
    seeds = rng.uniform(0, 1, (num_cells, 2)) * shape
    cell_labels = rng.choice(TOY_ADE_LABEL_IDS, num_cells, replace=False)
    ys, xs = pixel_grid(shape)
    warp, cell = 0.12 * sum(shape) / 2, min(shape) / 3  # displacement amplitude and smoothness
    ys = ys + warp * smooth_noise(rng, shape, cell)
    xs = xs + warp * smooth_noise(rng, shape, cell)
    sq_distances = (ys - seeds[:, :1, None]) ** 2 + (xs - seeds[:, 1:, None]) ** 2
    return cell_labels[sq_distances.argmin(0)]


def render_sample(seed: int, split: str, index: int):
    """Image ``index`` of ``split`` as (HxWx3 float image, HxW ADE20K label ids, record)."""
    rng = image_rng(seed, split, index)
    shape = int(rng.integers(128, 193)), int(rng.integers(128, 193))
    labels = region_labels(rng, shape)
    canvas = np.zeros(shape + (3,), np.float32)
    for label_id in np.unique(labels).tolist():
        _, (hue, sat, val), texture, contrast = CLASS_LOOKS[label_id]
        rgb = hsv_to_rgb(hue + rng.uniform(-0.02, 0.02), sat * rng.uniform(0.85, 1.1),
                         min(1., val * rng.uniform(0.85, 1.1)))
        paint(canvas, labels == label_id, rgb, texture(rng, shape), contrast)
    for _ in range(rng.integers(3)):
        other = blob_mask(rng, shape, rng.uniform(0, 1, 2) * shape, rng.uniform(5, 12))
        rgb = hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
        paint(canvas, other, rgb, random_texture(rng, shape), 0.2)
        labels[other] = 0
    return canvas, labels, dict(label_ids=np.unique(labels[labels > 0]).tolist())


def make_toy_ade(out_dir, num_train: int = 200, num_val: int = 50, seed: int = 0):
    """Write the set under ``out_dir``; returns its image and annotation folders and meta file."""
    return make_seg_set(out_dir, render_sample, seed, num_train, num_val,
                        stem='ADE_{split}_{index:08d}', label_ids=TOY_ADE_LABEL_IDS,
                        classes=TOY_ADE_CLASSES)


def ensure_toy_ade(root, **kwargs):
    """Generate the set under ``root`` unless its ``meta.json`` exists."""
    return ensure_generated(root, 'meta.json', make_toy_ade, **kwargs)
