# The long-range toy (tools/data/make_toy_longrange.py): a target's class is the colour of a
# marker >= 128 px away, so it cannot be read from the target's neighbourhood. The toy UperNet +
# MambaOut-femto of configs/toy/upernet_mambaout_femto_toy.py on whole images (a crop could cut
# the marker away); configs/toy/upernet_mambaout_ss2d_femto_longrange.py is its twin
# with the SSM put back.
_base_ = ['./upernet_mambaout_femto_toy.py']

data_root = 'data/toy_longrange'
classes = ('red', 'green', 'blue')  # mmambaout.datasets.TOY_LONGRANGE_CLASSES
image_size = (128, 128)  # the 256 px images at half size: the marker is still >= 64 px away

# Only the target is labelled (~3% of the pixels; the rest is ignored): average the loss over
# labelled pixels, or its gradient is ~30x too small.
loss = dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True)
model = dict(
    data_preprocessor=dict(size=image_size),
    decode_head=dict(num_classes=len(classes), loss_decode=dict(**loss, loss_weight=1.0)),
    auxiliary_head=dict(num_classes=len(classes), loss_decode=dict(**loss, loss_weight=0.4)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=image_size),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=dict(classes=classes),
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 4)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0., power=1., by_epoch=False, begin=50, end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
