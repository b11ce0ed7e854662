"""Effective receptive field of a config's model (as VMamba's ERF figure): the mean |∂ output at
the centre / ∂ input| over N images, at initialisation or from a checkpoint; see
mmambaout/analysis/erf.py.

    python tools/analysis/erf.py CONFIG --images DIR [--size H W] --out DIR
    python tools/analysis/erf.py CONFIG --toy-longrange [--width W] --output head --radius R
    python tools/analysis/erf.py CONFIG --checkpoint work_dirs/x/iter_400.pth --trust-checkpoint

Without --checkpoint the weights are the config's initialisation (a fresh one, or the pretrained
backbone its init_cfg names; --cfg-options model.backbone.init_cfg=None for a fresh one). Writes
DIR/erf.png (the map on a log scale, the square of --radius drawn), DIR/erf.csv (the mass
against the Chebyshev distance from the centre pixel) and DIR/erf.json (the share of the mass
beyond --radius, the radii that hold 50/90/99 % of it).
"""
import argparse
import json
import logging
from pathlib import Path

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from mmambaout.analysis.erf import (erf_in_eval_mode, float_to_bgr, image_files, output_network,
                                    preprocessed, read_bgr, write_erf)
from mmambaout.analysis.models import build_model
from mmambaout.datasets.toy_longrange import render_dense_sample
from mmambaout.utils import runtime
from mmambaout.utils.checkpoint_io import TRUST_FLAG, load_local_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an mmdet or mmseg config of this project')
    parser.add_argument('--out', type=Path, default=Path('work_dirs/erf'), help='output folder')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', type=Path, help='a folder of images (recursively, by name)')
    source.add_argument('--toy-longrange', action='store_true',
                        help='strips of the dense long-range toy (validation scenes)')
    parser.add_argument('--num-images', type=int, default=16)
    parser.add_argument('--size', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'),
                        help='--images are resized to this (default 512 512)')
    parser.add_argument('--width', type=int, default=640, help='--toy-longrange strip width')
    parser.add_argument('--output', choices=('backbone', 'head'), default='backbone',
                        help="backbone: its --stage'th output; head: a segmentor's logits")
    parser.add_argument('--stage', type=int, default=-1,
                        help="which of the backbone's outputs (default the last)")
    parser.add_argument('--radius', type=int, help='report the share of the mass beyond it, px')
    parser.add_argument('--checkpoint', help='weights of the whole model (tools/train.py saves '
                        'them); default: the config\'s initialisation')
    parser.add_argument(TRUST_FLAG, action='store_true',
                        help='unpickle --checkpoint fully (mmengine checkpoints need it): only '
                        'for files you trust')
    parser.add_argument('--seed', type=int, default=0, help='of a fresh initialisation')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as tools/train.py')
    return parser.parse_args(argv)


def load_weights(model, cfg, args) -> str:
    """The checkpoint's weights, or the config's initialisation; says which."""
    if args.checkpoint:
        state = load_local_checkpoint(args.checkpoint, 'cpu', args.trust_checkpoint)
        model.load_state_dict(state.get('state_dict', state))
        return args.checkpoint
    runtime.check_pretrained_files(cfg.model)
    # build_model leaves init_cfg out; initialisation here is the config's, pretrained included
    model.backbone.init_cfg = cfg.model.backbone.get('init_cfg')
    torch.manual_seed(args.seed)
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # one line per parameter else
    model.init_weights()
    return 'initialisation'


def main(argv=None):
    args = parse_args(argv)
    if args.num_images < 1:
        raise ValueError(f'--num-images must be at least 1, got {args.num_images}.')
    cfg = runtime.load_config(args.config, args.cfg_options)
    model = build_model(cfg)
    weights = load_weights(model, cfg, args)
    model.to(args.device)
    if args.images:
        images = [read_bgr(path, args.size)
                  for path in image_files(args.images, args.num_images)]
    else:
        images = [float_to_bgr(render_dense_sample(0, 'val', index, args.width)[0])
                  for index in range(args.num_images)]
    batches = preprocessed(model, images, args.batch_size, torch.device(args.device))
    erf = erf_in_eval_mode(model, output_network(model, args.output, args.stage), batches)
    title = f'{Path(args.config).stem}, {args.output}, {weights}'
    summary = dict(config=args.config, output=args.output, weights=weights,
                   **write_erf(erf, args.out, title, args.radius))
    (args.out / 'erf.json').write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(f'Wrote {args.out / "erf.png"}, {args.out / "erf.csv"}, {args.out / "erf.json"}')


if __name__ == '__main__':
    main()
