# The controlled twin of upernet_mambaout_femto_longrange.py: every Gated CNN block also runs
# VMamba's four-direction selective scan on its convolved channels. Nothing else differs.
_base_ = ['./upernet_mambaout_femto_longrange.py']

model = dict(backbone=dict(token_mixer='gated_cnn_ss2d'))
