# fcn_mambaout_femto_s8_longrange.py with 1x1 "depthwise convolutions": the blocks mix no tokens,
# so an output pixel sees only the stem, the downsampling and the head (~30 px to a side).
_base_ = ['./fcn_mambaout_femto_s8_longrange.py']

model = dict(backbone=dict(kernel_size=1))
