"""Convert a published MambaOut (official or timm) or VMamba v2 checkpoint into an mmambaout
backbone file.

    python tools/convert_checkpoint.py mambaout_tiny.pth checkpoints/mambaout_tiny_mmambaout.pth \
        --arch tiny
    python tools/convert_checkpoint.py vssm1_tiny_0230s_ckpt_epoch_264.pth vmamba_tiny.pth \
        --backbone VMamba --arch tiny --trust-pickle

The output is a plain state dict in this package's key layout (loads with weights_only=True).
With --arch, the result is checked against that backbone once written.
"""
import argparse

import torch

from mmambaout.models.backbones import MambaOut, VMamba
from mmambaout.models.checkpoint import load_pretrained, read_checkpoint, unwrap_state_dict

BACKBONES = {cls.__name__: cls for cls in (MambaOut, VMamba)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='published checkpoint (.pth / .bin)')
    parser.add_argument('dst', help='where to write the converted file')
    parser.add_argument('--backbone', default='MambaOut', choices=sorted(BACKBONES))
    parser.add_argument('--arch', help='check the result against BACKBONE(arch=ARCH)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='allow arbitrary pickled objects in SRC (only for files you trust, '
                        'e.g. full training checkpoints holding a config object)')
    return parser.parse_args()


def main():
    args = parse_args()
    backbone = BACKBONES[args.backbone]
    raw = (torch.load(args.src, map_location='cpu', weights_only=False)
           if args.trust_pickle else read_checkpoint(args.src))
    state, ignored = backbone.convert_checkpoint(unwrap_state_dict(raw))
    torch.save(state, args.dst)
    if args.arch:
        load_pretrained(backbone(arch=args.arch), args.dst, backbone.convert_checkpoint)
    print(f'Wrote {len(state)} tensors to {args.dst} (dropped {len(ignored)} classifier tensors)')


if __name__ == '__main__':
    main()
