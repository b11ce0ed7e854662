_base_ = ['./_base_/mask_rcnn_mambaout_coco.py']

# the MambaOut authors' ImageNet-1k release file (downloaded once into torch.hub's cache)
pretrained = 'https://github.com/yuweihao/MambaOut/releases/download/model/mambaout_tiny.pth'

model = dict(
    backbone=dict(
        arch='tiny', drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 576]))
