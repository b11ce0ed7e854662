"""Generate the toy COCO instance-segmentation set (see mmambaout/datasets/toy_coco.py)."""
import argparse

from mmambaout.datasets import make_toy_coco


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default='data/toy_coco', help='output folder')
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    paths = make_toy_coco(args.out, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    for name, path in paths.items():
        print(f'{name}: {path}')


if __name__ == '__main__':
    main()
