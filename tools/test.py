"""Test (and evaluate) a detector or segmentor checkpoint with an mmdet or mmseg config.

Flags as mmdet 3.3's tools/test.py; the config's default_scope picks the toolbox.
"""
import argparse

from mmambaout.utils import runtime


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Test a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='also dump the predictions to this .pkl file')
    parser.add_argument('--show', action='store_true', help='show the predictions')
    parser.add_argument('--show-dir', help='save images painted with the predictions here '
                        '(relative paths: under the work dir)')
    parser.add_argument('--wait-time', type=float, default=2.,
                        help='seconds each image is shown with --show')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's tta_model and "
                        'tta_pipeline')
    runtime.add_common_arguments(parser)
    return parser


def main(argv=None):
    args = runtime.parse_args(build_parser(), argv)
    cfg = runtime.load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    runtime.configure_testing(cfg, args.checkpoint, out=args.out, show=args.show,
                              show_dir=args.show_dir, wait_time=args.wait_time, tta=args.tta,
                              trust_checkpoint=args.trust_checkpoint)
    runtime.run(cfg, 'test')


if __name__ == '__main__':
    main()
