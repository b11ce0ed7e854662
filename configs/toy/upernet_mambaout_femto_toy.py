# The ADE20K UperNet recipe, sized for a 2-core CPU: MambaOut-femto trained from scratch on the
# toy ADE20K set (`make demo-seg` generates it in data/toy_ade; real layout, 7 of the 150
# classes, images 128-192 px). Same segmentor as configs/upernet_mambaout_*_ade20k.py; narrower
# heads, small images and crops, a short schedule at a higher learning rate, fp32.
_base_ = ['../_base_/upernet_mambaout_ade20k.py']

data_root = 'data/toy_ade'
crop_size = (128, 128)
image_scale = (640, 160)  # ADE20K's (2048, 512) scaled to the toy images' ~160 px
head_channels = 128

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='femto', drop_path_rate=0., init_cfg=None),
    decode_head=dict(in_channels=[48, 96, 192, 288], channels=head_channels),
    auxiliary_head=dict(in_channels=192, channels=head_channels // 2))

# ADE20K's pipelines at the toy scale. No PhotoMetricDistortion: hue is a class cue here.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# About 4 minutes on 2 cores; the toy set is easy: mIoU 95 after 100 iterations, 96 after 200.
max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 2)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0., power=1., by_epoch=False, begin=50, end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
