"""Generate the toy ADE20K semantic-segmentation set (see mmambaout/datasets/toy_ade.py)."""
from mmambaout.datasets import make_toy_ade
from mmambaout.datasets.cli import generate_from_command_line

if __name__ == '__main__':
    generate_from_command_line(__doc__, make_toy_ade, out='data/toy_ade', num_train=200,
                               num_val=50)
