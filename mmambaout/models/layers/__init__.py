from .conv_stem import ConvDownsample, ConvStem
from .gated_cnn import GatedCNNBlock

__all__ = ['ConvStem', 'ConvDownsample', 'GatedCNNBlock']
