# UperNet 160k with VMamba-S "s2l15" (depths 2-2-15-2, ssm_ratio 2.0; vssm_small_0229).
# The arch, drop path and recipe of VMamba's released UperNet, which tools/test.py evaluates with
# this config as it is: https://github.com/MzeroMiko/VMamba/releases/download/%23v2seg/
# upernet_vssm_4xb4-160k_ade20k-512x512_small_iter_144000.pth
_base_ = ['./_base_/upernet_vmamba_ade20k.py']

# VMamba's ImageNet-1k release file of this arch (downloaded once into torch.hub's cache)
pretrained = ('https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
              'vssm_small_0229_ckpt_epoch_222.pth')

model = dict(
    backbone=dict(
        arch='small', drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
