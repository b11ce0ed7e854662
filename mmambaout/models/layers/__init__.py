from .conv_stem import ConvDownsample, ConvStem
from .gated_cnn import GatedCNNBlock
from .ss2d import SS2D, CrossSelectiveScan, cross_merge, cross_scan
from .vss_block import VSSBlock

__all__ = ['ConvStem', 'ConvDownsample', 'GatedCNNBlock', 'SS2D', 'CrossSelectiveScan',
           'cross_scan', 'cross_merge', 'VSSBlock']
