# Mask R-CNN + FPN with a MambaOut backbone on COCO 2017 instance segmentation, 1x schedule:
# the settings shared by every size. A config built on this sets the backbone's `arch`,
# `drop_path_rate` and pretrained `init_cfg`, and the neck's `in_channels` (the backbone's dims).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmambaout'], allow_failed_imports=False)

# Each backbone output passes through its own LayerNorm (inside MambaOut), as in the paper.
model = dict(backbone=dict(_delete_=True, type='MambaOut', out_indices=(0, 1, 2, 3)))

# AdamW, lr 1e-4, weight decay 0.05 except on norms and biases; fp16 with dynamic loss scaling.
# (tools/train.py falls back to fp32 with a warning on a machine without a GPU.)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))

# 1000-iteration warm-up as VMamba's and Swin's Mask R-CNN recipes; steps at epochs 8 and 11.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]

# The learning rate above is for 16 images per step: 8 GPUs x 2 images (coco_instance's batch).
auto_scale_lr = dict(enable=False, base_batch_size=16)
