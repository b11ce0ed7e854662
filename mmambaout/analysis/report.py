"""Markdown tables for stdout and CSV files for the figures' data."""
import csv
import math
from pathlib import Path
from typing import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = [header, ['---'] * len(header), *rows]
    return '\n'.join('| ' + ' | '.join(map(str, line)) + ' |' for line in lines)


def significant(value: float, digits: int = 3) -> str:
    """`value` with `digits` significant figures and no exponent: a ratio of 0.0085 printed
    as 0.008 (a fixed 3 decimals) or a 3.4 ms time as 3 would be off by 6 % and 13 %."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f'{value:.{decimals}f}'


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
