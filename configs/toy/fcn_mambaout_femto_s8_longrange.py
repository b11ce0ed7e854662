# Setting (b) of the long-range distance sweep (tools/analysis/longrange_sweep.py): no global
# path. MambaOut-femto truncated after its stride-8 stage (stages 0-1, same widths and depths),
# and an FCN head on the stride-8 features: two 3x3 convolutions, no pooling, no other input.
# The marker's colour can reach the target only through mixing in the stride-4 and stride-8
# stages: for plain MambaOut, within a receptive field of 263 px (the logits'; 271 px per
# output pixel after upsampling; mmambaout.analysis.receptive_field). Everything else is
# upernet_mambaout_femto_longrange.py's; fcn_mambaout_ss2d_femto_s8_longrange.py is the twin.
_base_ = ['./upernet_mambaout_femto_longrange.py']

model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=(3, 3), dims=(48, 96)), out_indices=(1, )),
    decode_head=dict(
        _delete_=True, type='FCNHead', in_channels=96, in_index=0, channels=32, num_convs=2,
        kernel_size=3, concat_input=False, dropout_ratio=0.1, num_classes=3,
        norm_cfg=dict(type='SyncBN', requires_grad=True), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True,
                         loss_weight=1.0)),
    auxiliary_head=None)
