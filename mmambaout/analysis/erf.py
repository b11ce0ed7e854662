"""Effective receptive fields: how strongly an output at the centre of the image depends on each
input pixel, on real inputs (Luo et al., NeurIPS 2016; the ERF figures of RepLKNet and VMamba).

For N images x the map is the mean over the images of Σ_channels |∂s/∂x|, where s is the sum
over channels of |y| at the output location in the middle of the output map y. The RepLKNet
script that VMamba uses sums ReLU(y), which is the same where y > 0; both keep a LayerNorm'd
output, whose channels sum to a constant, from cancelling, but ReLU(y) has no gradient at all
where every channel is negative, as logits at initialisation can be. The *mass at distance d*
is the map's sum over the pixels at Chebyshev distance d from the centre pixel, as a share of
the whole map's sum. Unlike the theoretical window (receptive_field.py) it shows where the
weights at hand actually look, and it exists for any network, scans and attention included;
where the convolutions form a chain, the mass beyond the window's reach is exactly zero (the
gradient there is an exact 0).

The centre pixel of output location (i, j) of an h×w output of an H×W input is
(i·H // h, j·W // w): the middle of the window of a chain of convolutions with odd kernels and
``padding = kernel // 2``, as in every backbone here.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .report import significant, write_csv

Network = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, H, W) → (N, C, h, w)
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
MASS_HEADER = ['distance', 'pixels', 'mass share', 'share within', 'mean |gradient| per pixel']


@dataclass(frozen=True)
class ErfMap:
    """Mean Σ_channels |∂s/∂x| per input pixel over ``images`` images, and the centre pixel."""
    gradient: np.ndarray  # (H, W)
    centre: Tuple[int, int]
    images: int

    def distance(self) -> np.ndarray:
        """Each pixel's Chebyshev distance from the centre pixel."""
        rows, columns = np.indices(self.gradient.shape)
        return np.maximum(abs(rows - self.centre[0]), abs(columns - self.centre[1]))

    def mass_by_distance(self) -> np.ndarray:
        """Share of the map's sum at each distance 0, 1, … (sums to 1)."""
        mass = np.bincount(self.distance().ravel(), weights=self.gradient.ravel())
        return mass / mass.sum()

    def share_beyond(self, radius: int) -> float:
        """Share of the map's sum at distances greater than ``radius``."""
        return float(self.mass_by_distance()[radius + 1:].sum())

    def radius_holding(self, share: float) -> int:
        """The least radius within which the map holds at least ``share`` of its sum."""
        return int(np.searchsorted(np.cumsum(self.mass_by_distance()), share))

    def mass_rows(self) -> List[list]:
        """One row per distance: ``MASS_HEADER``."""
        distance = self.distance().ravel()
        pixels = np.bincount(distance)
        mass = self.mass_by_distance()
        total = self.gradient.sum()
        return [[d, int(pixels[d]), significant(mass[d]), significant(within),
                 significant(mass[d] * total / pixels[d])]
                for d, within in enumerate(np.cumsum(mass))]


def centre_location(output_shape: Sequence[int]) -> Tuple[int, int]:
    return output_shape[-2] // 2, output_shape[-1] // 2


def centre_pixel(input_shape: Sequence[int], output_shape: Sequence[int]) -> Tuple[int, int]:
    """The input pixel the middle output location is centred on (see the module's doc)."""
    (i, j), (H, W), (h, w) = centre_location(output_shape), input_shape[-2:], output_shape[-2:]
    return i * H // h, j * W // w


def effective_receptive_field(network: Network, batches: Iterable[torch.Tensor]) -> ErfMap:
    """The ERF of ``network`` (eval mode: images must not mix through batch statistics) over
    every image of ``batches`` (each (N, 3, H, W), all of one size)."""
    total, images, centre = None, 0, None
    for batch in batches:
        inputs = batch.detach().clone().requires_grad_(True)
        outputs = network(inputs)
        row, column = centre_location(outputs.shape)
        # one backward for the batch: the images' outputs do not depend on each other
        central = outputs[:, :, row, column].abs().sum()
        gradient, = torch.autograd.grad(central, inputs)
        summed = gradient.abs().sum((0, 1)).double().cpu()
        total = summed if total is None else total + summed
        images += len(batch)
        centre = centre_pixel(inputs.shape, outputs.shape)
    if not images:
        raise ValueError('effective_receptive_field got no images.')
    if not total.any():
        raise ValueError('The output at the centre does not depend on the input (its gradient '
                         'is 0 everywhere): is the network constant there?')
    return ErfMap((total / images).numpy(), centre, images)


def erf_in_eval_mode(model: nn.Module, network: Network, batches: Iterable[torch.Tensor]) -> ErfMap:
    """:func:`effective_receptive_field` with ``model`` (owning ``network``) in eval mode, its
    mode restored after."""
    was_training = model.training
    model.eval()
    try:
        return effective_receptive_field(network, batches)
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- writing it

def write_erf(erf: ErfMap, out: Path, title: str, radius: int = None) -> dict:
    """``out/erf.csv`` (the mass against distance), ``out/erf.png`` (the map, log scale, the
    square of ``radius`` drawn), and the summary they share, which is returned."""
    out = Path(out)
    write_csv(out / 'erf.csv', MASS_HEADER, erf.mass_rows())
    summary = dict(images=erf.images, centre=list(erf.centre),
                   **{f'radius holding {p} %': erf.radius_holding(p / 100) for p in (50, 90, 99)})
    if radius is not None:
        summary['radius'] = radius
        summary['share beyond radius'] = erf.share_beyond(radius)
    plot_erf(erf, out / 'erf.png', title, radius)
    return summary


def plot_erf(erf: ErfMap, path: Path, title: str, radius: int = None) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    height, width = erf.gradient.shape
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 3 + 7 * min(1, height / width)),
        gridspec_kw=dict(height_ratios=[max(0.5, 3 * height / width), 1.5]))
    relative = erf.gradient / erf.gradient.max()
    floor = 1e-6  # log scale: mass six decades below the peak shows as the floor
    image = top.imshow(np.log10(np.maximum(relative, floor)), cmap='viridis',
                       vmin=np.log10(floor), vmax=0, interpolation='nearest')
    fig.colorbar(image, ax=top, label='log10 (÷ max)', fraction=0.05)
    row, column = erf.centre
    top.plot(column, row, '+', color='white')
    mass = erf.mass_by_distance()
    bottom.semilogy(np.arange(len(mass)), np.maximum(mass, 1e-12))
    bottom.set_xlabel('Chebyshev distance from the centre pixel (px)')
    bottom.set_ylabel('mass share')
    if radius is not None:
        top.add_patch(matplotlib.patches.Rectangle(
            (column - radius - .5, row - radius - .5), 2 * radius + 1, 2 * radius + 1,
            fill=False, edgecolor='white', linestyle='--'))
        bottom.axvline(radius, color='black', linestyle='--',
                       label=f'radius {radius}: {erf.share_beyond(radius):.3g} of the mass beyond')
        bottom.legend(fontsize=8)
    top.set_xlim(-.5, width - .5)
    top.set_ylim(height - .5, -.5)
    top.set_title(f'{title} ({erf.images} images)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- inputs and networks

def image_files(folder: Path, count: int) -> List[Path]:
    """The first ``count`` images of ``folder`` (recursively, by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder '{folder}' does not exist.")
    files = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < count:
        raise ValueError(f"'{folder}' holds {len(files)} images ({', '.join(IMAGE_SUFFIXES)}), "
                         f'fewer than the {count} asked for: lower --num-images.')
    return files[:count]


def read_bgr(path: Path, size: Tuple[int, int]) -> torch.Tensor:
    """A uint8 (3, H, W) BGR tensor, resized to ``size`` (H, W): as mmcv's LoadImageFromFile
    hands images to a data preprocessor."""
    from PIL import Image
    with Image.open(path) as image:
        rgb = np.asarray(image.convert('RGB').resize(size[::-1], Image.BILINEAR))
    return torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1])).permute(2, 0, 1)


def float_to_bgr(image: np.ndarray) -> torch.Tensor:
    """An HxWx3 float RGB image in [0, 1] (the toy sets' renderers) as a uint8 BGR tensor."""
    return torch.from_numpy(np.round(image[..., ::-1] * 255).astype(np.uint8)).permute(2, 0, 1)


def preprocessed(model: nn.Module, images: Sequence[torch.Tensor], batch_size: int,
                 device: torch.device) -> List[torch.Tensor]:
    """uint8 BGR images through the model's data preprocessor (normalised, RGB as it trains),
    in batches."""
    batches = []
    for start in range(0, len(images), batch_size):
        data = dict(inputs=[image.to(device) for image in images[start:start + batch_size]])
        batches.append(model.data_preprocessor(data, False)['inputs'].float())
    return batches


def output_network(model: nn.Module, output: str, stage: int = -1) -> Network:
    """What the ERF is taken of: ``'backbone'`` (the ``stage``-th of its outputs) or ``'head'``
    (a segmentor's decode-head logits, before upsampling)."""
    if output == 'backbone':
        return lambda x: model.backbone(x)[stage]
    if output == 'head':
        if getattr(model, 'decode_head', None) is None:
            raise ValueError(f'{type(model).__name__} has no decode_head: --output head takes a '
                             'segmentor; use --output backbone.')
        return lambda x: model.decode_head(model.backbone(x))
    raise ValueError(f"output must be 'backbone' or 'head', got {output!r}.")
