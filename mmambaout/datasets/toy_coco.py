"""A toy COCO instance-segmentation set: textured shapes on dull, cluttered backgrounds.

Layout, in the real COCO format (pycocotools and mmdet's ``CocoDataset`` read it unchanged)::

    ROOT/train/000001.jpg ...                 ROOT/val/000001.jpg ...
    ROOT/annotations/instances_train.json     ROOT/annotations/instances_val.json

An image is 160-256 px a side (any size, not only multiples of 32) and holds 1-4 shapes of the
classes ``TOY_COCO_CLASSES``, each 12-45 % of the shorter side across (most over 20 %), randomly
rotated and filled with stripes, a checkerboard or grain in its class's colour family; every
20th image (the first of each split included) holds none. Later shapes occlude earlier ones and
an annotation covers the visible part only. A shape is placed only where it hides at most half
of every earlier object and does not lie wholly inside one (that would punch a hole, which COCO
polygons cannot express), so no annotation is a sliver of an object. Polygons follow the pixel
edges of the visible mask, one per 8-connected piece, so pycocotools rasterises them back to
those pixels (all but a pixel or so where a piece touches itself diagonally).
"""
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ._render import (cluttered_background, ensure_generated, hsv_to_rgb, image_rng, paint,
                      random_texture, save_jpeg, save_json)

TOY_COCO_CLASSES = ('circle', 'rectangle', 'triangle', 'star')
CLASS_HUES = (0.0, 0.33, 0.6, 0.13)  # a colour family per class: learnable from scratch
OBJECT_COUNT_PROBS = (0.25, 0.3, 0.27, 0.18)  # of 1, 2, 3, 4 shapes in a non-empty image
EMPTY_EVERY = 20
MIN_VISIBLE = 0.5  # fraction of an object that later shapes must leave visible
PLACEMENT_TRIES = 20

INFO = dict(description='mmambaout toy COCO: textured shapes', version='1.0', year=2025,
            contributor='mmambaout')
LICENSES = [dict(id=1, name='CC0-1.0', url='https://creativecommons.org/publicdomain/zero/1.0/')]


def shape_vertices(rng, label: int, center, radius: float):
    """Polygon (x, y) vertices of a randomly rotated shape of class ``label`` within ``radius``."""
    name = TOY_COCO_CLASSES[label]
    if name == 'circle':
        angles, radii = np.linspace(0, 2 * np.pi, 48, endpoint=False), np.ones(48)
    elif name == 'rectangle':
        diagonal = rng.uniform(0.45, 0.8)  # the diagonal's angle: aspect ratio 0.5-1
        angles = np.array([diagonal, np.pi - diagonal, np.pi + diagonal, -diagonal])
        radii = np.ones(4)
    elif name == 'triangle':
        angles, radii = np.arange(3) * 2 * np.pi / 3, np.ones(3)
    else:  # a five-pointed star, fat enough to stay recognisable when small
        angles, radii = np.arange(10) * np.pi / 5, np.tile([1.0, 0.5], 5)
    angles = angles + rng.uniform(0, 2 * np.pi)
    xs = center[1] + radius * radii * np.cos(angles)
    ys = center[0] + radius * radii * np.sin(angles)
    return list(zip(xs.tolist(), ys.tolist()))


def random_shape(rng, label: int, shape) -> np.ndarray:
    """Mask of a shape of class ``label``, of random size, placed wholly inside the image."""
    h, w = shape
    radius = rng.triangular(0.12, 0.35, 0.45) * min(h, w) / 2  # mostly 20-45 % across
    center = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
    mask = Image.new('L', (w, h))
    ImageDraw.Draw(mask).polygon(shape_vertices(rng, label, center, radius), fill=1)
    return np.asarray(mask, dtype=bool)


def occlusion_allowed(new, full_masks, visible_masks) -> bool:
    """Whether ``new`` leaves enough of every earlier object visible and none with a hole."""
    return all((visible & ~new).sum() >= MIN_VISIBLE * full.sum() and (new & ~full).any()
               for full, visible in zip(full_masks, visible_masks))


def place_shapes(rng, shape, num_shapes: int):
    """Labels and visible masks of up to ``num_shapes`` shapes stacked back to front."""
    labels, full_masks, visible_masks = [], [], []
    for _ in range(num_shapes):
        for _ in range(PLACEMENT_TRIES):
            label = int(rng.integers(len(TOY_COCO_CLASSES)))
            mask = random_shape(rng, label, shape)
            if occlusion_allowed(mask, full_masks, visible_masks):
                visible_masks = [visible & ~mask for visible in visible_masks] + [mask]
                full_masks.append(mask)
                labels.append(label)
                break
    return labels, visible_masks


def render_sample(seed: int, split: str, index: int):
    """Image ``index`` of ``split`` as (HxWx3 float image, labels, visible masks)."""
    rng = image_rng(seed, split, index)
    shape = int(rng.integers(160, 257)), int(rng.integers(160, 257))
    canvas = cluttered_background(rng, shape)
    num_shapes = 0 if index % EMPTY_EVERY == 0 else 1 + rng.choice(4, p=OBJECT_COUNT_PROBS)
    labels, masks = place_shapes(rng, shape, num_shapes)
    for label, mask in zip(labels, masks):
        rgb = hsv_to_rgb(CLASS_HUES[label] + rng.uniform(-0.05, 0.05), rng.uniform(0.55, 0.9),
                         rng.uniform(0.6, 0.95))
        paint(canvas, mask, rgb, random_texture(rng, shape), contrast=rng.uniform(0.1, 0.25))
    return canvas, labels, masks


def boundary_successors(mask: np.ndarray):
    """Map each pixel corner (x, y) on the mask's boundary to the corners its edges lead to.

    Edges run with foreground on their right (in image coordinates, y down): clockwise around
    objects, counter-clockwise around holes.
    """
    padded = np.pad(mask, 1)
    successors = defaultdict(list)
    above, below = padded[:-1, 1:-1], padded[1:, 1:-1]  # the pixels either side of corner rows
    for y, x in np.argwhere(below & ~above).tolist():
        successors[(x, y)].append((x + 1, y))
    for y, x in np.argwhere(above & ~below).tolist():
        successors[(x + 1, y)].append((x, y))
    left, right = padded[1:-1, :-1], padded[1:-1, 1:]  # ... and each column of corners
    for y, x in np.argwhere(right & ~left).tolist():
        successors[(x, y + 1)].append((x, y))
    for y, x in np.argwhere(left & ~right).tolist():
        successors[(x, y)].append((x, y + 1))
    return successors


def next_edge(successors, edge):
    """The boundary edge after ``edge``; where two leave its end corner, the left turn.

    Two edges leave a corner only where foreground pixels touch diagonally; turning left keeps
    them on one loop, so a polygon outlines an 8-connected piece (as cv2.findContours does)
    rather than splitting off single pixels.
    """
    (x0, y0), (x1, y1) = edge
    ends = successors[(x1, y1)]
    if len(ends) == 1:
        return (x1, y1), ends[0]
    return (x1, y1), (x1 + (y1 - y0), y1 - (x1 - x0))


def boundary_loops(mask: np.ndarray):
    """Every closed boundary loop of ``mask`` as an (N, 2) array of (x, y) pixel corners."""
    successors = boundary_successors(mask)
    visited, loops = set(), []
    for start in ((a, b) for a, ends in successors.items() for b in ends):
        if start in visited:
            continue
        loop, edge = [], start
        while edge != start or not loop:
            visited.add(edge)
            loop.append(edge[0])
            edge = next_edge(successors, edge)
        loops.append(np.array(loop))
    return loops


def mask_to_polygons(mask: np.ndarray):
    """COCO polygons ([x1, y1, x2, y2, ...]) of the outer boundaries of a binary mask.

    Only the corners where a loop turns are kept; holes are dropped (COCO polygons are unioned).
    """
    polygons = []
    for loop in boundary_loops(mask):
        turns = ((loop - np.roll(loop, 1, 0)) != (np.roll(loop, -1, 0) - loop)).any(1)
        xs, ys = loop[:, 0], loop[:, 1]
        if (xs * np.roll(ys, -1) - np.roll(xs, -1) * ys).sum() > 0:  # clockwise: an outer boundary
            polygons.append(loop[turns].ravel().tolist())
    return polygons


def coco_annotation(ann_id: int, image_id: int, label: int, mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(id=ann_id, image_id=image_id, category_id=label + 1,
                segmentation=mask_to_polygons(mask), area=int(mask.sum()),
                bbox=[x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0], iscrowd=0)


def make_toy_coco(out_dir, num_train: int = 240, num_val: int = 60, seed: int = 0):
    """Write the set under ``out_dir``; returns the image folders and annotation files."""
    root = Path(out_dir)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(TOY_COCO_CLASSES)]
    paths = {}
    for split, num_images in (('train', num_train), ('val', num_val)):  # val last: the sentinel
        images, annotations = [], []
        for index in range(num_images):
            canvas, labels, masks = render_sample(seed, split, index)
            image_id, file_name = index + 1, f'{index + 1:06d}.jpg'
            save_jpeg(root / split / file_name, canvas)
            images.append(dict(id=image_id, file_name=file_name, height=canvas.shape[0],
                               width=canvas.shape[1], license=1))
            for label, mask in zip(labels, masks):
                annotations.append(coco_annotation(len(annotations) + 1, image_id, label, mask))
        ann_file = root / 'annotations' / f'instances_{split}.json'
        save_json(ann_file, dict(info=INFO, licenses=LICENSES, images=images,
                                 annotations=annotations, categories=categories))
        paths[f'{split}_images'], paths[f'{split}_ann'] = root / split, ann_file
    return paths


def ensure_toy_coco(root, **kwargs) -> Path:
    """Generate the set under ``root`` unless its val annotations exist."""
    return ensure_generated(root, 'annotations/instances_val.json', make_toy_coco, **kwargs)
