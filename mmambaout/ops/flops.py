"""FLOPs of the selective scan for mmengine's counter, which otherwise skips it silently.

mmengine's ``FlopAnalyzer`` traces the model with ``torch.jit.trace`` and counts op by op. The
chunked and triton backends run the scan as one autograd Function, ``SelectiveScan``, which the
trace shows as a single ``prim::PythonOp.SelectiveScan`` node; the handle here counts it as
9·B·L·D·N, the Mamba authors' count (mmengine counts one multiply-add as one FLOP elsewhere, so
mixed totals follow two conventions, as in VMamba's reports). The elementwise ops around the node
(D·u, the z gate, softplus) are ignored by mmengine like all elementwise ops. The 'reference'
backend is a Python loop and is not counted.

How ``get_flops.py`` should use it: instead of ``get_model_complexity_info(model, inputs=...)``::

    from mmengine.analysis import FlopAnalyzer, flop_count_str
    from mmambaout.ops import scan_flop_handles

    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**scan_flop_handles())
    flops = analyzer.total()  # and flop_count_str(analyzer) for the per-module table
"""
from typing import Any, Callable, Dict, List

from .selective_scan import SelectiveScan


def selective_scan_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """mmengine op handle: 9·B·L·D·N for a ``SelectiveScan`` node, whose first inputs are
    u (B, D, L), delta and A (D, N)."""
    from mmengine.analysis.jit_handles import get_shape

    batch, dim, length = get_shape(inputs[0])
    state = get_shape(inputs[2])[1]
    return 9 * batch * length * dim * state


def scan_flop_handles() -> Dict[str, Callable]:
    """``{op name: handle}`` for ``FlopAnalyzer.set_op_handle(**scan_flop_handles())``."""
    return {f'prim::PythonOp.{SelectiveScan.__name__}': selective_scan_flop_jit}
