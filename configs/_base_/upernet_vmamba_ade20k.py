# UperNet (+ auxiliary FCN head) with a VMamba v2 backbone on ADE20K, 160k iterations at crop
# 512x512: the settings shared by every size. A config built on this sets the backbone's `arch`,
# `drop_path_rate` and pretrained `init_cfg`, the decode head's `in_channels` (the backbone's
# dims) and the auxiliary head's (dims[2]).
#
# As VMamba's own segmentation/configs/vssm1/upernet_vssm_4xb4-160k_ade20k-512x512_*.py, so that
# its released checkpoints test as they are: all four stages out, each through its own LayerNorm
# (their `outnorm{i}`, eps 1e-5), mmseg's UperNet (512 channels, SyncBN) and FCN auxiliary head
# (256), ADE20K pipelines (test: resize to 2048x512 keeping the ratio, whole-image inference;
# --tta: scales 0.5-1.75 and flips), ImageNet mean/std on RGB, AdamW lr 6e-5 wd 0.01,
# 1500-iteration warm-up then linear decay.
# Different here, for training only: AMP (theirs: fp32), no weight decay on any norm layer or
# bias (theirs: none on parameters whose name holds 'norm'), and 8 GPUs x 2 images per step
# (their file names say 4 x 4; 16 images either way).
_base_ = ['./upernet_mambaout_ade20k.py']

model = dict(backbone=dict(_delete_=True, type='VMamba', out_indices=(0, 1, 2, 3)))
optim_wrapper = dict(optimizer=dict(lr=6e-5))
