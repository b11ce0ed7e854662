_base_ = ['./_base_/upernet_mambaout_ade20k.py']

pretrained = 'checkpoints/mambaout_base.pth'  # official or timm MambaOut-Base ImageNet-1k file

model = dict(
    backbone=dict(
        arch='base', drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 768]),
    auxiliary_head=dict(in_channels=512))
