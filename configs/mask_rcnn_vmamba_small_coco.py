# Mask R-CNN 1x with a VMamba v2 backbone. The base's AdamW (lr 1e-4, wd 0.05), 1000-iteration
# warm-up and steps [8, 11] are VMamba's published recipe too: only the backbone differs.
_base_ = ['./_base_/mask_rcnn_mambaout_coco.py']

# official VMamba-S ImageNet-1k file, from github.com/MzeroMiko/VMamba/releases/download/v2cls/
pretrained = 'checkpoints/vssm1_small_0229s_ckpt_epoch_240.pth'

model = dict(
    backbone=dict(
        _delete_=True, type='VMamba', arch='small', out_indices=(0, 1, 2, 3), drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
