"""Convert an official or timm MambaOut checkpoint into an mmambaout backbone file.

    python tools/convert_checkpoint.py mambaout_tiny.pth checkpoints/mambaout_tiny_mmambaout.pth \
        --arch tiny

The output is a plain state dict in this package's key layout (loads with weights_only=True).
With --arch, the result is checked against that backbone before it is written.
"""
import argparse

import torch

from mmambaout.models.backbones.mambaout import MambaOut, convert_mambaout_checkpoint
from mmambaout.models.checkpoint import load_pretrained, read_checkpoint, unwrap_state_dict


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official or timm MambaOut checkpoint (.pth / .bin)')
    parser.add_argument('dst', help='where to write the converted file')
    parser.add_argument('--arch', help='check the result against MambaOut(arch=ARCH)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='allow arbitrary pickled objects in SRC (only for files you trust)')
    return parser.parse_args()


def main():
    args = parse_args()
    raw = (torch.load(args.src, map_location='cpu', weights_only=False)
           if args.trust_pickle else read_checkpoint(args.src))
    state, ignored = convert_mambaout_checkpoint(unwrap_state_dict(raw))
    torch.save(state, args.dst)
    if args.arch:
        load_pretrained(MambaOut(arch=args.arch), args.dst, convert_mambaout_checkpoint)
    print(f'Wrote {len(state)} tensors to {args.dst} (dropped {len(ignored)} classifier tensors)')


if __name__ == '__main__':
    main()
