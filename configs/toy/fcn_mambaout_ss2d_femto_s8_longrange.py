# The controlled twin of fcn_mambaout_femto_s8_longrange.py: every Gated CNN block also runs
# VMamba's four-direction selective scan on its convolved channels. Nothing else differs.
_base_ = ['./fcn_mambaout_femto_s8_longrange.py']

model = dict(backbone=dict(token_mixer='gated_cnn_ss2d'))
