# UperNet 160k with VMamba-T "s1l8" (depths 2-2-8-2, ssm_ratio 1.0; vssm1_tiny_0230s).
# The arch, drop path and recipe of VMamba's released UperNet, which tools/test.py evaluates with
# this config as it is: https://github.com/MzeroMiko/VMamba/releases/download/%23v2seg/
# upernet_vssm_4xb4-160k_ade20k-512x512_tiny_s_iter_160000.pth
_base_ = ['./_base_/upernet_vmamba_ade20k.py']

# VMamba's ImageNet-1k release file of this arch (downloaded once into torch.hub's cache)
pretrained = ('https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
              'vssm1_tiny_0230s_ckpt_epoch_264.pth')

model = dict(
    backbone=dict(
        arch='tiny', drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
