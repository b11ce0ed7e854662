# The twin with 1x1 "depthwise convolutions" (fcn_mambaout_femto_s8_k1_longrange.py's twin): what
# it carries farther than that arm sees is the selective scan's alone.
_base_ = ['./fcn_mambaout_femto_s8_k1_longrange.py']

model = dict(backbone=dict(token_mixer='gated_cnn_ss2d'))
