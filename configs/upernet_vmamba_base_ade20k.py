# UperNet 160k with a VMamba v2 backbone. VMamba's published recipe is the base's (AdamW,
# wd 0.01, 1500-iteration warm-up, poly decay, 160k iterations, crop 512) with lr 6e-5.
_base_ = ['./_base_/upernet_mambaout_ade20k.py']

# official VMamba-B ImageNet-1k file, from github.com/MzeroMiko/VMamba/releases/download/v2cls/
pretrained = 'checkpoints/vssm1_base_0229s_ckpt_epoch_225.pth'

model = dict(
    backbone=dict(
        _delete_=True, type='VMamba', arch='base', out_indices=(0, 1, 2, 3), drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))

optim_wrapper = dict(optimizer=dict(lr=6e-5))
