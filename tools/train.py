"""Train a detector or segmentor from an mmdet or mmseg config.

Flags as mmdet 3.3's tools/train.py; the config's default_scope picks the toolbox.
"""
import argparse

from mmambaout.utils import runtime


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (fp32 with a warning without a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by actual batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint; alone, from the latest checkpoint in '
                        'the work dir')
    runtime.add_common_arguments(parser)
    return parser


def main(argv=None):
    args = runtime.parse_args(build_parser(), argv)
    cfg = runtime.load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    runtime.configure_training(cfg, amp=args.amp, auto_scale_lr=args.auto_scale_lr,
                               resume=args.resume, trust_checkpoint=args.trust_checkpoint)
    runtime.run(cfg, 'train')


if __name__ == '__main__':
    main()
