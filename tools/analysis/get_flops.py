"""Parameters and FLOPs of a detection or segmentation config at one input size.

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--cfg-options ...]

The default size is the MambaOut paper's: 800×1280 for detection, 512×2048 for segmentation.
FLOPs are mmengine's count, in which one multiply-add is one FLOP (the paper's "FLOPs"/MACs).
"""
import argparse
import warnings

from mmengine.config import Config, DictAction

from mmambaout.utils.complexity import PAPER_SHAPES, model_complexity
from mmambaout.utils.runtime import toolbox_of


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Parameters and FLOPs of a config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: the paper\'s size for the task)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings: key=value pairs')
    return parser.parse_args(argv)


def format_table(config: str, result: dict) -> str:
    shape = 'x'.join(map(str, result['input_shape']))
    lines = [f'{config}, input {shape}', '| part | params (M) | GFLOPs |', '|---|---:|---:|']
    lines += [f'| {name} | {params / 1e6:.2f} | {flops / 1e9:.1f} |'
              for name, (params, flops) in result['parts'].items()]
    lines.append('GFLOPs: multiply-adds, 1 MAC = 1 FLOP (as the paper).')
    if result['uncounted_ops']:
        ops = ', '.join(f'{op} (x{calls})' for op, calls in result['uncounted_ops'].items())
        lines.append(f'Not counted (no FLOP rule in mmengine): {ops}')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    height, width = args.shape or PAPER_SHAPES[toolbox_of(cfg)]
    with warnings.catch_warnings():  # tracing a detector warns on every data-dependent branch
        warnings.simplefilter('ignore')
        result = model_complexity(cfg, height, width)
    print(format_table(args.config, result))


if __name__ == '__main__':
    main()
