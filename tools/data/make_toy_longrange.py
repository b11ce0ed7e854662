"""Generate the toy long-range segmentation set (see mmambaout/datasets/toy_longrange.py)."""
from mmambaout.datasets import make_toy_longrange
from mmambaout.datasets.cli import generate_from_command_line
from mmambaout.datasets.toy_longrange import DISTANCE, WIDTH

if __name__ == '__main__':
    generate_from_command_line(
        __doc__, make_toy_longrange, out='data/toy_longrange', num_train=200, num_val=50,
        distance=(DISTANCE, 'columns between the marker and the target'),
        width=(WIDTH, 'strip width in px (height 32)'))
