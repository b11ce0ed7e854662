"""How a cost grows with input size: the exponent of a power-law fit."""
from typing import Sequence

import numpy as np


def scaling_exponent(pixels: Sequence[float], costs: Sequence[float]) -> float:
    """Slope of the least-squares line through (log pixels, log cost): 1 for a cost linear in
    the token count, 2 for a quadratic one (global attention once L ≫ 6·D)."""
    if len(pixels) != len(costs) or len(set(pixels)) < 2:
        raise ValueError('a scaling exponent needs costs at two or more input sizes, got '
                         f'{len(set(pixels))} size(s) for {len(costs)} cost(s)')
    slope, _ = np.polyfit(np.log(pixels), np.log(costs), 1)
    return float(slope)
