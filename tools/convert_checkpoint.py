"""Convert a published MambaOut (official or timm) or VMamba v2 checkpoint into an mmambaout
backbone file, or a published whole detector or segmentor into an mmambaout model file.

    python tools/convert_checkpoint.py mambaout_tiny.pth checkpoints/mambaout_tiny_mmambaout.pth \
        --arch tiny
    python tools/convert_checkpoint.py vssm1_tiny_0230s_ckpt_epoch_264.pth vmamba_tiny.pth \
        --backbone VMamba --arch tiny --trust-pickle
    python tools/convert_checkpoint.py mask_rcnn_vssm_fpn_coco_tiny_s_epoch_12.pth \
        mask_rcnn_vmamba_tiny_coco.pth --backbone VMamba --arch tiny --whole-model --trust-pickle

SRC may be a URL (downloaded once into torch.hub's cache). The output is a plain state dict in
this package's key layout (loads with weights_only=True); with --whole-model,
``{'state_dict': ..., 'meta': {'dataset_meta': ...}}`` with the backbone's keys converted and the
neck's and heads' kept, for tools/test.py or ``load_from``. With --arch, the backbone is checked
against that arch once written.
"""
import argparse

import torch

from mmambaout.models.backbones import MambaOut, VMamba
from mmambaout.models.checkpoint import (BACKBONE_PREFIX, load_pretrained, read_checkpoint,
                                         rename_backbone_keys, unwrap_state_dict)
from mmambaout.utils.checkpoint_io import download_checkpoint, is_url

BACKBONES = {cls.__name__: cls for cls in (MambaOut, VMamba)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='published checkpoint (.pth / .bin), a path or URL')
    parser.add_argument('dst', help='where to write the converted file')
    parser.add_argument('--backbone', default='MambaOut', choices=sorted(BACKBONES))
    parser.add_argument('--arch', help='check the result against BACKBONE(arch=ARCH)')
    parser.add_argument('--whole-model', action='store_true',
                        help='SRC is a whole mmdet/mmseg model (backbone.*, neck and heads): '
                        'write all of it, the backbone converted (default: the backbone only)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='allow arbitrary pickled objects in SRC (only for files you trust, '
                        'e.g. full training checkpoints holding a config object)')
    return parser.parse_args()


def main():
    args = parse_args()
    backbone = BACKBONES[args.backbone]
    if args.trust_pickle:
        src = download_checkpoint(args.src) if is_url(args.src) else args.src
        raw = torch.load(src, map_location='cpu', weights_only=False)
    else:
        raw = read_checkpoint(args.src)
    model = raw.get('state_dict', raw)
    is_whole_model = any(k.startswith(BACKBONE_PREFIX) for k in model)
    if args.whole_model:
        if not is_whole_model:
            raise SystemExit(f"{args.src} holds no '{BACKBONE_PREFIX}*' tensors: it is not a "
                             'whole detector or segmentor; convert it without --whole-model.')
        tensors = {k: v for k, v in model.items() if isinstance(v, torch.Tensor)}
        state, _, ignored = rename_backbone_keys(tensors, backbone.convert_checkpoint)
        # the class names and palette, read by mmdet's and mmseg's inference APIs
        meta = {k: v for k, v in raw.get('meta', {}).items() if k == 'dataset_meta'}
        torch.save({'state_dict': state, 'meta': meta}, args.dst)
    else:
        state, ignored = backbone.convert_checkpoint(unwrap_state_dict(raw))
        torch.save(state, args.dst)
    if args.arch:
        load_pretrained(backbone(arch=args.arch), args.dst, backbone.convert_checkpoint)
    print(f'Wrote {len(state)} tensors to {args.dst} (dropped {len(ignored)} classifier tensors)')
    if is_whole_model and not args.whole_model:
        print(f'{args.src} is a whole detector or segmentor: only its backbone was written; '
              '--whole-model writes the neck and heads too.')


if __name__ == '__main__':
    main()
