"""A toy segmentation set whose labels depend on evidence a set distance away.

Each image is a strip ``STRIP_HEIGHT`` (32) px tall and ``width`` px wide on a cluttered
background. It holds a small coloured square, the *marker*, and a *target*, a grey striped blob
``TARGET_WIDTH`` (16) columns wide. The target looks the same for every class; its label is the
class named by the marker's colour. Between the marker's last column and the target's first
there are exactly ``distance`` columns (the target's nearest pixel is ``distance`` px from the
marker in the Chebyshev metric, which is what a square receptive field reaches; its farthest
``distance + 15``). The distance is the set's controlled variable: everything else is drawn
the same way at every distance. The marker's place along the strip is random and half the
images are mirrored, so the marker is left or right of the target.

What it can show: a pixel of the target can only be labelled from information carried over
``distance`` px. A model without a global path (no pooling, no attention, no SSM) whose
receptive field does not reach that far is at chance (33 %) by construction; one that reaches
may or may not learn to use its reach within a schedule (its *effective* receptive field is
smaller than its theoretical one); a global mixer can be exact at any distance. Accuracy against
distance thus measures how far a model carries evidence at the strip's resolution. What it
cannot show: anything about real images, whose long-range dependencies are rarely a single
colour cue; and a model with a global path elsewhere (UperNet's pooling, deep low-resolution
stages) can solve it without any long-range mixing at high resolution.

Layout, ADE20K's (mmseg's ``BaseSegDataset`` with ``metainfo=dict(classes=TOY_LONGRANGE_CLASSES)``,
``reduce_zero_label=True``, ``img_suffix='.jpg'`` and ``seg_map_suffix='.png'`` reads it)::

    ROOT/images/{training,validation}/000001.jpg
    ROOT/annotations/{training,validation}/000001.png
    ROOT/meta.json    (distance, width; per image: its class and marker box [x0, y0, x1, y1))

Labels: 0 is "other" (the background and the marker: ignored after ``reduce_zero_label``) and k in
1..K the target of class ``TOY_LONGRANGE_CLASSES[k - 1]``.

The *dense* variant (:func:`make_toy_longrange_dense`, the distance sweep's) has no target and
no set distance: the marker lies anywhere along the strip and every other pixel is labelled with
its class, so one image holds every distance from 0 to the strip's width, and accuracy per bin of
distance to the marker (:func:`marker_distance`) gives a whole curve from one set. Its images
come in threes: images 3s, 3s + 1 and 3s + 2 show scene s with the marker in each class's colour
and every other pixel drawn alike, so the marker's colour is the only evidence of the label, and
a pixel that cannot see the marker gets the same prediction in all three: exactly 33.3 %.
"""
import functools
import json
from pathlib import Path

import numpy as np

from ._render import (blob_mask, cluttered_background, ensure_generated, image_rng, make_seg_set,
                      paint, pixel_grid, stripes)

TOY_LONGRANGE_CLASSES = ('red', 'green', 'blue')
MARKER_RGB = np.array([(0.9, 0.15, 0.15), (0.15, 0.8, 0.2), (0.2, 0.3, 0.95)], np.float32)
STRIP_HEIGHT = 32
MARKER_SIZE = 16
TARGET_WIDTH = 16
MARGIN = 4  # px between the marker or target and the strip's ends
DISTANCE, WIDTH = 128, 320  # defaults


def max_distance(width: int) -> int:
    """The largest distance a strip ``width`` px wide holds."""
    return width - 2 * MARGIN - MARKER_SIZE - TARGET_WIDTH + 1


def check_geometry(distance: int, width: int) -> None:
    if not 1 <= distance <= max_distance(width):
        raise ValueError(f'distance {distance} does not fit a strip {width} px wide (1 to '
                         f'{max_distance(width)}): pass a width of at least '
                         f'{distance + width - max_distance(width)}.')


def place_marker(rng, shape, last_x0: int):
    """The marker's first column (drawn in MARGIN..last_x0) and its mask; its rows at random."""
    marker = np.zeros(shape, bool)
    x0 = int(rng.integers(MARGIN, last_x0 + 1))
    y0 = int(rng.integers(2, STRIP_HEIGHT - MARKER_SIZE - 1))
    marker[y0:y0 + MARKER_SIZE, x0:x0 + MARKER_SIZE] = True
    return x0, marker


def marker_box(marker) -> list:
    """[x0, y0, x1, y1) of a mask's pixels."""
    ys, xs = np.nonzero(marker)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def marker_distance(marker) -> np.ndarray:
    """Every pixel's Chebyshev distance to the nearest pixel of the marker (a box; its pixels
    0): what a square window must reach to see it."""
    x0, y0, x1, y1 = marker_box(marker)
    ys, xs = np.indices(marker.shape)
    dx = np.maximum(0, np.maximum(x0 - xs, xs - (x1 - 1)))
    dy = np.maximum(0, np.maximum(y0 - ys, ys - (y1 - 1)))
    return np.maximum(dx, dy)


def render_sample(seed: int, split: str, index: int, distance: int = DISTANCE,
                  width: int = WIDTH):
    """Image ``index`` of ``split`` as (HxWx3 float image, HxW labels, record)."""
    rng = image_rng(seed, split, index)
    shape = STRIP_HEIGHT, width
    canvas = cluttered_background(rng, shape)
    class_index = int(rng.integers(len(TOY_LONGRANGE_CLASSES)))

    x0, marker = place_marker(rng, shape, max_distance(width) - distance + MARGIN)
    canvas[marker] = MARKER_RGB[class_index]

    # A blob at least 8.4 px in radius (wobble 0.1) around the band's middle column fills the
    # band's width on its centre row: the target's first column is never empty.
    first_column = x0 + MARKER_SIZE - 1 + distance
    center = (rng.uniform(8, STRIP_HEIGHT - 8), first_column + (TARGET_WIDTH - 1) / 2)
    columns = pixel_grid(shape)[1]
    target = (blob_mask(rng, shape, center, rng.uniform(12, 16), wobble=0.1)
              & (columns >= first_column) & (columns < first_column + TARGET_WIDTH))
    grey = np.full(3, rng.uniform(0.6, 0.75), np.float32)  # the same neutral look for every class
    paint(canvas, target, grey, stripes(shape, 6, np.pi / 4, rng.uniform(0, 2 * np.pi)), 0.3)

    labels = np.where(target, class_index + 1, 0)
    if rng.integers(2):
        canvas, labels, marker = (np.fliplr(a) for a in (canvas, labels, marker))
    return canvas, labels, dict(label=class_index + 1, marker_box=marker_box(marker))


def render_dense_sample(seed: int, split: str, index: int, width: int = WIDTH):
    """Image ``index`` of ``split`` of a dense set (see above): scene ``index // 3`` with the
    marker in colour ``index % 3``, as (HxWx3 float image, HxW labels, record)."""
    num_classes = len(TOY_LONGRANGE_CLASSES)
    rng = image_rng(seed, split, index // num_classes)  # the scene's: alike in all three
    class_index = index % num_classes
    shape = STRIP_HEIGHT, width
    canvas = cluttered_background(rng, shape)
    _, marker = place_marker(rng, shape, width - MARGIN - MARKER_SIZE)
    canvas[marker] = MARKER_RGB[class_index]
    labels = np.where(marker, 0, class_index + 1)
    return canvas, labels, dict(label=class_index + 1, marker_box=marker_box(marker))


def make_toy_longrange(out_dir, num_train: int = 200, num_val: int = 50, seed: int = 0,
                       distance: int = DISTANCE, width: int = WIDTH):
    """Write the set under ``out_dir``; returns its image and annotation folders and meta file."""
    check_geometry(distance, width)
    render = functools.partial(render_sample, distance=distance, width=width)
    return make_seg_set(out_dir, render, seed, num_train, num_val, stem='{index:06d}',
                        classes=TOY_LONGRANGE_CLASSES, distance=distance, width=width,
                        height=STRIP_HEIGHT)


def make_toy_longrange_dense(out_dir, num_train: int = 600, num_val: int = 150, seed: int = 0,
                             width: int = WIDTH):
    """Write a dense set (see above) under ``out_dir``; returns its folders and meta file."""
    for name, count in (('num_train', num_train), ('num_val', num_val)):
        if count % len(TOY_LONGRANGE_CLASSES):
            raise ValueError(f'{name} {count}: a dense set holds its scenes in every colour, '
                             f'so it takes a multiple of {len(TOY_LONGRANGE_CLASSES)}.')
    if width < MARKER_SIZE + 2 * MARGIN:
        raise ValueError(f'width {width} does not hold the marker: pass at least '
                         f'{MARKER_SIZE + 2 * MARGIN}.')
    render = functools.partial(render_dense_sample, width=width)
    return make_seg_set(out_dir, render, seed, num_train, num_val, stem='{index:06d}',
                        classes=TOY_LONGRANGE_CLASSES, labels='dense', width=width,
                        height=STRIP_HEIGHT)


def ensure_toy_longrange(root, num_train: int = 200, num_val: int = 50, seed: int = 0,
                         distance: int = DISTANCE, width: int = WIDTH) -> Path:
    """Generate the set under ``root`` unless its ``meta.json`` exists; a set there drawn with
    other settings is refused."""
    return ensure_set(root, make_toy_longrange, {}, num_train=num_train, num_val=num_val,
                      seed=seed, distance=distance, width=width)


def ensure_toy_longrange_dense(root, num_train: int = 600, num_val: int = 150, seed: int = 0,
                               width: int = WIDTH) -> Path:
    """As :func:`ensure_toy_longrange`, for a dense set."""
    return ensure_set(root, make_toy_longrange_dense, dict(labels='dense'), num_train=num_train,
                      num_val=num_val, seed=seed, width=width)


def ensure_set(root, make, meta_only: dict, num_train: int, num_val: int, **settings) -> Path:
    """``make(root, ...)`` unless ``root/meta.json`` exists; refuse a set there whose meta
    differs from the arguments or from ``meta_only`` (what ``make`` records unasked)."""
    root = ensure_generated(root, 'meta.json', make, num_train=num_train, num_val=num_val,
                            **settings)
    wanted = dict(**settings, **meta_only, training=num_train, validation=num_val)
    meta = json.loads((root / 'meta.json').read_text())
    found = {key: len(meta[key]) if key in ('training', 'validation') else meta.get(key)
             for key in wanted}
    if found != wanted:
        raise ValueError(f'{root} holds a long-range set drawn with {found}, not {wanted}: '
                         'delete the folder or choose another one.')
    return root
