_base_ = ['./_base_/upernet_mambaout_ade20k.py']

pretrained = 'checkpoints/mambaout_tiny.pth'  # official or timm MambaOut-Tiny ImageNet-1k file

model = dict(
    backbone=dict(
        arch='tiny', drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
