"""Drawing and writing helpers shared by the toy dataset generators (numpy + Pillow only).

Every image gets its own random generator, derived from ``(seed, split, index)``, so a set is
byte-for-byte reproducible and one split does not change when the other's size does.
"""
import colorsys
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SPLIT_IDS = {'train': 0, 'val': 1}
SEG_SPLIT_DIRS = {'train': 'training', 'val': 'validation'}  # ADE20K's folder names


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of image ``index`` of ``split``."""
    return np.random.default_rng((seed, SPLIT_IDS[split], index))


def hsv_to_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    """A colour as float RGB in [0, 1]; hue wraps around."""
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, sat, val), dtype=np.float32)


def pixel_grid(shape):
    """Float (y, x) coordinates of every pixel centre."""
    ys, xs = np.mgrid[:shape[0], :shape[1]].astype(np.float32)
    return ys, xs


def smooth_noise(rng, shape, cell: float) -> np.ndarray:
    """Zero-mean noise of roughly unit scale that varies smoothly over about ``cell`` pixels."""
    h, w = shape
    coarse = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


def stripes(shape, period: float, angle: float, phase: float = 0.) -> np.ndarray:
    """A ±1 square wave across direction ``angle`` (radians)."""
    ys, xs = pixel_grid(shape)
    across = xs * np.cos(angle) + ys * np.sin(angle)
    return np.where(np.sin(2 * np.pi * across / period + phase) >= 0, 1., -1.).astype(np.float32)


def checker(shape, period: float, angle: float) -> np.ndarray:
    """A ±1 checkerboard of squares ``period / 2`` wide, rotated by ``angle``."""
    return stripes(shape, period, angle) * stripes(shape, period, angle + np.pi / 2)


def random_texture(rng, shape) -> np.ndarray:
    """Stripes, a checkerboard or grainy noise in [-1, 1], with random scale and orientation."""
    kind = rng.integers(3)
    period, angle = rng.uniform(4, 10), rng.uniform(0, np.pi)
    if kind == 0:
        return stripes(shape, period, angle)
    if kind == 1:
        return checker(shape, period, angle)
    return np.clip(smooth_noise(rng, shape, period / 4), -1, 1)


def paint(canvas, mask, rgb, texture, contrast: float):
    """Fill ``canvas`` (HxWx3 float) inside ``mask`` with ``rgb``, shaded by ``texture``."""
    shade = 1 + contrast * texture[mask]
    canvas[mask] = np.clip(rgb[None, :] * shade[:, None], 0, 1)


def blob_mask(rng, shape, center, radius: float, wobble: float = 0.2) -> np.ndarray:
    """A smooth random blob: a circle whose radius varies with three low harmonics.

    Each harmonic moves the boundary by at most ``wobble * radius``, so for ``wobble < 1/3`` the
    blob stays star-convex around ``center`` (one piece, no holes).
    """
    ys, xs = pixel_grid(shape)
    dy, dx = ys - center[0], xs - center[1]
    theta = np.arctan2(dy, dx)
    boundary = np.ones_like(theta)
    for k in (2, 3, 4):
        boundary += rng.uniform(0, wobble) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(dy, dx) < radius * boundary


def cluttered_background(rng, shape) -> np.ndarray:
    """A dull, low-contrast background: grey-ish smooth noise with faint lines and blobs."""
    h, w = shape
    base = hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.2), rng.uniform(0.35, 0.6))
    canvas = base * (1 + 0.08 * smooth_noise(rng, shape, rng.uniform(12, 40)))[..., None]
    canvas += 0.03 * rng.standard_normal((h, w, 1)).astype(np.float32)  # sensor grain
    for _ in range(rng.integers(2, 6)):
        blob = blob_mask(rng, shape, (rng.uniform(0, h), rng.uniform(0, w)), rng.uniform(6, 30))
        canvas[blob] *= rng.uniform(0.9, 1.1)
    lines = Image.new('L', (w, h))
    draw = ImageDraw.Draw(lines)
    for _ in range(rng.integers(2, 6)):
        ends = rng.uniform(0, 1, 4) * (w, h, w, h)
        draw.line(tuple(ends), fill=int(rng.integers(8, 20)), width=int(rng.integers(1, 3)))
    canvas += np.asarray(lines, dtype=np.float32)[..., None] / 255 * rng.choice((-1, 1))
    return np.clip(canvas, 0, 1)


def save_jpeg(path: Path, canvas: np.ndarray):
    """Write an HxWx3 float [0, 1] image as a quality-95 JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(canvas * 255).astype(np.uint8)).save(path, quality=95)


def save_label_png(path: Path, labels: np.ndarray):
    """Write an HxW label map as a single-channel 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8)).save(path)


def save_json(path: Path, obj):
    """Write ``obj`` as compact JSON (key order as given, so the bytes are reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_seg_set(root, render_sample, seed: int, num_train: int, num_val: int, stem: str, **meta):
    """Render both splits into ADE20K's layout and write ``meta.json`` last.

    ``render_sample(seed, split, index)`` returns (HxWx3 float image, HxW labels, record); the
    layout is ``images/{training,validation}/<stem>.jpg`` with labels in ``annotations/...png``,
    ``stem`` being formatted with ``split`` and the 1-based ``index``. ``meta.json`` holds
    ``meta`` and, per split, each image's stem and record.
    """
    root = Path(root)
    paths, records = {}, {}
    for split, num_images in (('train', num_train), ('val', num_val)):
        image_dir = root / 'images' / SEG_SPLIT_DIRS[split]
        label_dir = root / 'annotations' / SEG_SPLIT_DIRS[split]
        records[SEG_SPLIT_DIRS[split]] = []
        for index in range(num_images):
            canvas, labels, record = render_sample(seed, split, index)
            name = stem.format(split=split, index=index + 1)
            save_jpeg(image_dir / f'{name}.jpg', canvas)
            save_label_png(label_dir / f'{name}.png', labels)
            records[SEG_SPLIT_DIRS[split]].append(dict(stem=name, **record))
        paths[f'{split}_images'], paths[f'{split}_labels'] = image_dir, label_dir
    paths['meta'] = root / 'meta.json'
    save_json(paths['meta'], dict(seed=seed, **meta, **records))
    return paths


def ensure_generated(root, sentinel: str, make, **kwargs) -> Path:
    """Run ``make(root, **kwargs)`` unless ``root/sentinel`` (the file it writes last) exists."""
    root = Path(root)
    if not (root / sentinel).exists():
        print(f'{make.__name__}: generating {root} (missing {sentinel})', flush=True)
        make(root, **kwargs)
    return root
