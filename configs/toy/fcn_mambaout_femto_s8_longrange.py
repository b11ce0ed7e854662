# The long-range study (tools/analysis/longrange_sweep.py, docs/longrange.md), plain arm: strips
# 32x320 px of the dense long-range toy (mmambaout/datasets/toy_longrange.py; the sweep writes it
# into DIR/data, make_toy_longrange_dense anywhere), in which every pixel but the marker's takes
# the class named by the marker's colour.
# MambaOut-femto truncated after its stride-8 stage (stages 0-1, same widths and depths) and an
# FCN head on the stride-8 features: two 3x3 convolutions, no pooling, no other input. The
# marker's colour reaches a pixel only through mixing in the stride-4 and stride-8 stages: for
# plain MambaOut within a receptive field of 263 px per logit (an output pixel sees 128-142 px to
# a side; mmambaout.analysis.receptive_field). The other arms change one thing each.
_base_ = ['./upernet_mambaout_femto_toy.py']
custom_imports = dict(imports=['mmambaout', 'mmambaout.analysis.longrange'],
                      allow_failed_imports=False)

data_root = 'data/toy_longrange_dense'
classes = ('red', 'green', 'blue')  # mmambaout.datasets.TOY_LONGRANGE_CLASSES
strip_size = (32, 320)  # (H, W): the images as generated, no resizing

model = dict(
    data_preprocessor=dict(size=strip_size),
    backbone=dict(arch=dict(_delete_=True, depths=(3, 3), dims=(48, 96)), out_indices=(1, )),
    decode_head=dict(
        _delete_=True, type='FCNHead', in_channels=96, in_index=0, channels=32, num_convs=2,
        kernel_size=3, concat_input=False, dropout_ratio=0.1, num_classes=len(classes),
        norm_cfg=dict(type='SyncBN', requires_grad=True), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True,
                         loss_weight=1.0)),
    auxiliary_head=None)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),  # the marker (0) is ignored
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=dict(classes=classes),
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(batch_size=8, dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='LongRangeDistanceAccuracy')  # per 16-px bin
test_evaluator = val_evaluator

# The recipe, tuned on this arm only and shared by every arm (docs/longrange.md).
max_iters = 3200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 16)
optim_wrapper = dict(optimizer=dict(lr=5e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=False, begin=100, end=max_iters),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_iters))
