"""Selective-scan ops: ``selective_scan`` (reference, chunked PyTorch and Triton backends) and its
FLOP handle for mmengine's counter."""
from .flops import scan_flop_handles, selective_scan_flop_jit
from .selective_scan import BACKENDS, selective_scan

__all__ = ['BACKENDS', 'selective_scan', 'scan_flop_handles', 'selective_scan_flop_jit']
