# The long-range toy (tools/data/make_toy_longrange.py): strips 32x320 px in which a target's
# class is the colour of a marker `distance` px away. Setting (a) of the distance sweep
# (tools/analysis/longrange_sweep.py): the toy UperNet + MambaOut-femto of
# configs/toy/upernet_mambaout_femto_toy.py, with both global paths that need no long-range
# mixing at high resolution: the pyramid pooling module (pool scale 1 is a global average) and
# the stride-16/32 stages (2x20 and 1x10 tokens here, which a few 7x7 convolutions span).
# configs/toy/upernet_mambaout_ss2d_femto_longrange.py is its twin with the SSM put back.
_base_ = ['./upernet_mambaout_femto_toy.py']

data_root = 'data/toy_longrange'
classes = ('red', 'green', 'blue')  # mmambaout.datasets.TOY_LONGRANGE_CLASSES
strip_size = (32, 320)  # (H, W): the images as generated, no resizing
head_channels = 32

# Only the target is labelled (~5% of the pixels; the rest is ignored): average the loss over
# labelled pixels, or its gradient is ~20x too small.
loss = dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True)
model = dict(
    data_preprocessor=dict(size=strip_size),
    decode_head=dict(channels=head_channels, num_classes=len(classes),
                     loss_decode=dict(**loss, loss_weight=1.0)),
    auxiliary_head=dict(channels=head_channels, num_classes=len(classes),
                        loss_decode=dict(**loss, loss_weight=0.4)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
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

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 4)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0., power=1., by_epoch=False, begin=50, end=max_iters),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters))
