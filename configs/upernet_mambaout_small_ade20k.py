_base_ = ['./_base_/upernet_mambaout_ade20k.py']

# the MambaOut authors' ImageNet-1k release file (downloaded once into torch.hub's cache)
pretrained = 'https://github.com/yuweihao/MambaOut/releases/download/model/mambaout_small.pth'

model = dict(
    backbone=dict(
        arch='small', drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
