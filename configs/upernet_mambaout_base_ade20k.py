_base_ = ['./_base_/upernet_mambaout_ade20k.py']

# the MambaOut authors' ImageNet-1k release file (downloaded once into torch.hub's cache)
pretrained = 'https://github.com/yuweihao/MambaOut/releases/download/model/mambaout_base.pth'

model = dict(
    backbone=dict(
        arch='base', drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 768]),
    auxiliary_head=dict(in_channels=512))
