# UperNet (+ auxiliary FCN head) with a MambaOut backbone on ADE20K (150 classes), 160k
# iterations at crop 512x512: the settings shared by every size. A config built on this sets the
# backbone's `arch`, `drop_path_rate` and pretrained `init_cfg`, the decode head's `in_channels`
# (the backbone's dims) and the auxiliary head's (dims[2]).
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',  # UperNet channels 512, FCN auxiliary head 256
    'mmseg::_base_/datasets/ade20k.py',  # also tta_pipeline: scales 0.5-1.75, flip
    'mmseg::_base_/default_runtime.py',  # also tta_model: SegTTAModel
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmambaout'], allow_failed_imports=False)

crop_size = (512, 512)
# Each backbone output passes through its own LayerNorm (inside MambaOut), as in the paper.
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type='MambaOut', out_indices=(0, 1, 2, 3)),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))

# AdamW, lr 1e-4, weight decay 0.01 except on norms and biases; fp16 with dynamic loss scaling.
# (tools/train.py falls back to fp32 with a warning on a machine without a GPU.)
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))

# 1500-iteration linear warm-up, then linear ("poly", power 1) decay to 0, as VMamba's and
# Swin's UperNet recipes.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0., power=1., by_epoch=False, begin=1500, end=160000),
]

# The learning rate above is for 16 images per step: 8 GPUs x 2 images.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
