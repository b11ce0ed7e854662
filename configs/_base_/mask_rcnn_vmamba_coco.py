# Mask R-CNN + FPN with a VMamba v2 backbone on COCO 2017 instance segmentation, 1x schedule: the
# settings shared by every size. A config built on this sets the backbone's `arch`,
# `drop_path_rate` and pretrained `init_cfg`, and the neck's `in_channels` (the backbone's dims).
#
# As VMamba's own detection/configs/vssm1/mask_rcnn_vssm_fpn_coco_{tiny,small,base}.py, so that
# its released checkpoints test as they are: all four stages out, each through its own LayerNorm
# (their `outnorm{i}`, eps 1e-5), mmdet's Mask R-CNN with FPN (256 channels) and heads, COCO
# pipelines (test: 1333x800, keep ratio), ImageNet mean/std on RGB, AdamW lr 1e-4 wd 0.05,
# 1000-iteration warm-up, steps at epochs 8 and 11, 16 images per step.
# Different here, for training only: AMP (theirs: fp32), and no weight decay on any norm layer
# or bias (theirs: none on parameters whose name holds 'norm', which in their key layout leaves
# the stem's and downsamplings' norms, biases and the SSM's A_logs/Ds decayed).
_base_ = ['./mask_rcnn_mambaout_coco.py']

model = dict(backbone=dict(_delete_=True, type='VMamba', out_indices=(0, 1, 2, 3)))
