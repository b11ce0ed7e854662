"""A toy segmentation set whose labels depend on evidence far away: a test of global mixing.

Each 256x256 image has a small coloured square, the *marker*, near one edge and a *target*
region, a smooth random blob, near the opposite edge. The target's texture and colour are the
same for every class; its label is the class named by the marker's colour. So a pixel of the
target cannot be labelled from its neighbourhood, only by looking at least ``MIN_DISTANCE``
pixels away: a stack of local (e.g. 7x7) convolutions with a smaller receptive field is at
chance, a model that mixes information globally can be exact.

Distance guarantee: every target pixel is at least ``MIN_DISTANCE`` (128) pixels from every
marker pixel. An image is drawn with the marker 4-20 px from its left edge and the target clipped
to the columns from the marker's last column + ``MIN_DISTANCE`` on, then turned by a random
multiple of 90 degrees (so the marker may be at any edge).

Layout, ADE20K's (mmseg's ``BaseSegDataset`` with ``metainfo=dict(classes=TOY_LONGRANGE_CLASSES)``,
``reduce_zero_label=True``, ``img_suffix='.jpg'`` and ``seg_map_suffix='.png'`` reads it)::

    ROOT/images/{training,validation}/000001.jpg
    ROOT/annotations/{training,validation}/000001.png
    ROOT/meta.json    (per image: its class and marker box [x0, y0, x1, y1), end exclusive)

Labels: 0 is "other" (the background and the marker: ignored after ``reduce_zero_label``) and k in
1..K the target of class ``TOY_LONGRANGE_CLASSES[k - 1]``.
"""
import numpy as np

from ._render import (blob_mask, cluttered_background, ensure_generated, image_rng, make_seg_set,
                      paint, pixel_grid, stripes)

TOY_LONGRANGE_CLASSES = ('red', 'green', 'blue')
MARKER_RGB = np.array([(0.9, 0.15, 0.15), (0.15, 0.8, 0.2), (0.2, 0.3, 0.95)], np.float32)
IMAGE_SIZE = 256
MARKER_SIZE = 16
MIN_DISTANCE = 128


def render_sample(seed: int, split: str, index: int):
    """Image ``index`` of ``split`` as (HxWx3 float image, HxW labels, record)."""
    rng = image_rng(seed, split, index)
    shape = IMAGE_SIZE, IMAGE_SIZE
    canvas = cluttered_background(rng, shape)
    class_index = int(rng.integers(len(TOY_LONGRANGE_CLASSES)))

    marker = np.zeros(shape, bool)
    x0, y0 = rng.integers(4, 21), rng.integers(16, IMAGE_SIZE - 16 - MARKER_SIZE)
    marker[y0:y0 + MARKER_SIZE, x0:x0 + MARKER_SIZE] = True
    canvas[marker] = MARKER_RGB[class_index]

    first_column = x0 + MARKER_SIZE - 1 + MIN_DISTANCE
    radius = rng.uniform(20, 32)
    center = (rng.uniform(radius, IMAGE_SIZE - radius),
              rng.uniform(first_column + radius, IMAGE_SIZE - radius))
    target = blob_mask(rng, shape, center, radius) & (pixel_grid(shape)[1] >= first_column)
    grey = np.full(3, rng.uniform(0.6, 0.75), np.float32)  # the same neutral look for every class
    paint(canvas, target, grey, stripes(shape, 6, np.pi / 4, rng.uniform(0, 2 * np.pi)), 0.3)

    labels = np.where(target, class_index + 1, 0)
    turns = int(rng.integers(4))
    canvas, labels, marker = (np.rot90(a, turns) for a in (canvas, labels, marker))
    ys, xs = np.nonzero(marker)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return canvas, labels, dict(label=class_index + 1, marker_box=box)


def make_toy_longrange(out_dir, num_train: int = 200, num_val: int = 50, seed: int = 0):
    """Write the set under ``out_dir``; returns its image and annotation folders and meta file."""
    return make_seg_set(out_dir, render_sample, seed, num_train, num_val, stem='{index:06d}',
                        classes=TOY_LONGRANGE_CLASSES, min_distance=MIN_DISTANCE)


def ensure_toy_longrange(root, **kwargs):
    """Generate the set under ``root`` unless its ``meta.json`` exists."""
    return ensure_generated(root, 'meta.json', make_toy_longrange, **kwargs)
