"""Generate the toy COCO instance-segmentation set (see mmambaout/datasets/toy_coco.py)."""
from mmambaout.datasets import make_toy_coco
from mmambaout.datasets.cli import generate_from_command_line

if __name__ == '__main__':
    generate_from_command_line(__doc__, make_toy_coco, out='data/toy_coco', num_train=240,
                               num_val=60)
