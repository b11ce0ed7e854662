"""Effective receptive fields (mmambaout/analysis/erf.py, tools/analysis/erf.py), checked on
networks whose reach is known exactly: the mass beyond it is 0, and at its edge it is not."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmambaout.analysis.erf import effective_receptive_field
from mmambaout.models import MambaOut

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools' / 'analysis'))
import erf as erf_tool  # noqa: E402  (tools/analysis/erf.py)

LOCAL = REPO / 'configs' / 'toy' / 'fcn_mambaout_femto_s8_longrange.py'
LOCAL_TWIN = REPO / 'configs' / 'toy' / 'fcn_mambaout_ss2d_femto_s8_longrange.py'


def test_mass_stops_exactly_at_a_hand_computed_reach():
    # A MambaOut stem and one Gated CNN block. By hand: the stem's two 3x3 stride-2 convolutions
    # (padding 1) centre output i on input pixel 4i and see 4i - 3 ... 4i + 3; the block's 7x7
    # depthwise convolution at stride 4 adds 3 tokens, 12 px, to a side: 15 px in all.
    torch.manual_seed(0)
    backbone = MambaOut(arch=dict(depths=(1, ), dims=(8, )), out_indices=(0, )).double().eval()
    images = torch.randn(3, 2, 3, 64, 64, dtype=torch.float64)
    erf = effective_receptive_field(lambda x: backbone(x)[0], images)
    assert erf.images == 6 and erf.centre == (32, 32)  # output 16x16: location (8, 8) → 4·8
    rows, columns = np.nonzero(erf.gradient)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (17, 47, 17, 47)
    assert erf.share_beyond(15) == 0 and erf.share_beyond(14) > 0
    assert erf.mass_by_distance().sum() == pytest.approx(1)

    # the mean over the images of each image's own |gradient|, one backward per image
    def one(image):
        image = image[None].clone().requires_grad_(True)
        out = backbone(image)[0]
        gradient, = torch.autograd.grad(out[0, :, 8, 8].abs().sum(), image)
        return gradient.abs().sum((0, 1))
    expected = torch.stack([one(image) for image in images.flatten(0, 1)]).mean(0)
    np.testing.assert_allclose(erf.gradient, expected.numpy(), rtol=1e-12)


def test_tool_on_the_long_range_configs(tmp_path):
    # The plain arm's logits see 263 px (131 to a side of their centre pixel; the window is
    # checked against the real model's gradient in test_longrange.py): nothing lies beyond.
    out = tmp_path / 'plain'
    erf_tool.main([str(LOCAL), '--toy-longrange', '--width', '320', '--num-images', '2',
                   '--output', 'head', '--radius', '131', '--out', str(out)])
    summary = json.loads((out / 'erf.json').read_text())
    assert summary['share beyond radius'] == 0 and summary['weights'] == 'initialisation'
    with open(out / 'erf.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['distance']) for r in rows] == list(range(len(rows)))
    assert sum(float(r['mass share']) for r in rows) == pytest.approx(1, abs=1e-3)
    assert float(rows[131]['mass share']) > 0 and float(rows[132]['mass share']) == 0
    assert (out / 'erf.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # the twin's scan reaches past the convolutions
    out = tmp_path / 'twin'
    erf_tool.main([str(LOCAL_TWIN), '--toy-longrange', '--width', '320', '--num-images', '1',
                   '--output', 'head', '--radius', '131', '--out', str(out)])
    assert json.loads((out / 'erf.json').read_text())['share beyond radius'] > 0


def test_tool_reads_a_folder_and_refuses_too_few_images(tmp_path):
    from PIL import Image
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.new('RGB', (40, 30), (200, 10, 10)).save(folder / 'a.jpg')
    erf_tool.main([str(LOCAL), '--images', str(folder), '--num-images', '1', '--size', '32',
                   '64', '--out', str(tmp_path / 'x')])
    summary = json.loads((tmp_path / 'x' / 'erf.json').read_text())
    assert (summary['images'], summary['centre'], summary['output']) == (1, [16, 32], 'backbone')
    with pytest.raises(ValueError, match=r"holds 1 images .* fewer than the 2 asked for"):
        erf_tool.main([str(LOCAL), '--images', str(folder), '--num-images', '2',
                       '--out', str(tmp_path / 'x')])
