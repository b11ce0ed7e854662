# Control c of the long-range study: the plain arm's backbone under a head with a global path,
# mmseg's ASPP head with one 1x1 branch and its image-pooling branch (global average pooling,
# broadcast back to every position). It must learn every distance with the recipe and budget
# every arm shares (fcn_mambaout_femto_s8_longrange.py).
_base_ = ['./fcn_mambaout_femto_s8_longrange.py']

model = dict(
    decode_head=dict(
        _delete_=True, type='ASPPHead', in_channels=96, in_index=0, channels=32, dilations=(1, ),
        dropout_ratio=0.1, num_classes=3, norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True,
                         loss_weight=1.0)))
