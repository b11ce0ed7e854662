"""The MambaOut paper's published detection and segmentation results, and those VMamba's
authors list for their released checkpoints, as data.

Keys are (task, backbone as the paper names it); "VMamba v2" is the paper's VMambaV9/V3 rows
(VMamba's released v2 models), plain "VMamba" its v0. COCO: Mask R-CNN 1x, params (M) and MACs
(G) at 800×1280, box and mask AP. ADE20K: UperNet 160k, params (M) and MACs (G) at 512×2048,
single- and multi-scale mIoU.
"""
from typing import List, Tuple

CITATION = ('Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992 '
            '(CVPR 2025)')
COCO, ADE20K = 'coco', 'ade20k'
METRICS = {
    COCO: ('APb', 'APb50', 'APb75', 'APm', 'APm50', 'APm75'),
    ADE20K: ('mIoU SS', 'mIoU MS'),
}
TASK_TITLES = {COCO: 'COCO, Mask R-CNN 1x', ADE20K: 'ADE20K, UperNet 160k'}


def _row(task: str, params: float, macs: float, *metrics: float) -> dict:
    return dict(params=params, macs=macs, **dict(zip(METRICS[task], metrics, strict=True)))


PAPER_RESULTS = {
    (COCO, 'ConvNeXt-T'): _row(COCO, 48, 262, 44.2, 66.6, 48.3, 40.1, 63.3, 42.8),
    (COCO, 'Swin-T'): _row(COCO, 48, 267, 42.7, 65.2, 46.8, 39.3, 62.2, 42.2),
    (COCO, 'VMamba-T (v0)'): _row(COCO, 42, 286, 46.5, 68.5, 50.7, 42.1, 65.5, 45.3),
    (COCO, 'VMamba v2-T'): _row(COCO, 50, 270, 47.4, 69.5, 52.0, 42.7, 66.3, 46.0),
    (COCO, 'MambaOut-T'): _row(COCO, 43, 262, 45.1, 67.3, 49.6, 41.0, 64.1, 44.1),
    (COCO, 'VMamba v2-S'): _row(COCO, 64, 357, 48.7, 70.0, 53.4, 43.7, 67.3, 47.0),
    (COCO, 'MambaOut-S'): _row(COCO, 65, 354, 47.4, 69.1, 52.4, 42.7, 66.1, 46.2),
    (COCO, 'VMamba v2-B'): _row(COCO, 108, 485, 49.2, 70.9, 53.9, 43.9, 67.7, 47.6),
    (COCO, 'MambaOut-B'): _row(COCO, 100, 495, 47.4, 69.3, 52.2, 43.0, 66.4, 46.3),
    (ADE20K, 'MambaOut-T'): _row(ADE20K, 54, 938, 47.4, 48.6),
    (ADE20K, 'MambaOut-S'): _row(ADE20K, 76, 1032, 49.5, 50.6),
    (ADE20K, 'MambaOut-B'): _row(ADE20K, 112, 1178, 49.6, 51.0),
    (ADE20K, 'VMamba v2-T'): _row(ADE20K, 62, 948, 48.3, 48.6),
    (ADE20K, 'VMamba v2-S'): _row(ADE20K, 82, 1039, 50.6, 51.2),
    (ADE20K, 'VMamba v2-B'): _row(ADE20K, 122, 1170, 51.0, 51.6),
    (ADE20K, 'ConvNeXt-T'): _row(ADE20K, 60, 939, 46.0, 46.7),
    (ADE20K, 'Swin-T'): _row(ADE20K, 60, 945, 44.4, 45.8),
}

# The results VMamba's authors list for their released v2 Mask R-CNN 1x and UperNet 160k
# checkpoints (README of github.com/MzeroMiko/VMamba, params and FLOPs as given there), which
# configs/*_vmamba_*.py evaluate as they are.
VMAMBA_RELEASE = ("VMamba's released v2 checkpoints, results as listed in the README of "
                  'github.com/MzeroMiko/VMamba (Liu et al., arXiv 2401.10166)')
VMAMBA_RELEASE_RESULTS = {
    (COCO, 'VMamba v2-T'): _row(COCO, 50, 271, 47.3, 69.3, 52.0, 42.7, 66.4, 45.9),
    (COCO, 'VMamba v2-S'): _row(COCO, 70, 384, 48.7, 70.0, 53.4, 43.7, 67.3, 47.0),
    (COCO, 'VMamba v2-B'): _row(COCO, 108, 485, 49.2, 71.4, 54.0, 44.1, 68.3, 47.7),
    (ADE20K, 'VMamba v2-T'): _row(ADE20K, 62, 949, 47.9, 48.8),
    (ADE20K, 'VMamba v2-S'): _row(ADE20K, 82, 1028, 50.6, 51.2),
    (ADE20K, 'VMamba v2-B'): _row(ADE20K, 122, 1170, 51.0, 51.6),
}
# Each source of published numbers: its label in tables, its citation, its rows.
PUBLISHED = (('paper', CITATION, PAPER_RESULTS),
             ('VMamba release', VMAMBA_RELEASE, VMAMBA_RELEASE_RESULTS))

# Our backbones' arch names → the paper's size letters.
SIZE_NAMES = {'femto': 'Femto', 'kobe': 'Kobe', 'tiny': 'T', 'small': 'S', 'base': 'B'}
PAPER_FAMILIES = {'MambaOut': 'MambaOut', 'VMamba': 'VMamba v2'}  # our VMamba is v2


def backbone_name(backbone_cfg: dict) -> str:
    """The paper's name for a backbone config, e.g. MambaOut arch 'tiny' → 'MambaOut-T';
    other configs get 'Type-arch' (the SS2D twin: 'MambaOut-T + SS2D', not in the paper)."""
    kind = backbone_cfg['type'].split('.')[-1]
    arch = backbone_cfg.get('arch', backbone_cfg.get('depth', ''))
    name = f'{PAPER_FAMILIES.get(kind, kind)}-{SIZE_NAMES.get(arch, arch)}'
    if backbone_cfg.get('token_mixer', 'gated_cnn') == 'gated_cnn_ss2d':
        name += ' + SS2D'
    return name


def published_results(task: str, backbone: str) -> List[Tuple[str, dict]]:
    """(source label, row) of every source that publishes the backbone's result."""
    return [(label, rows[task, backbone]) for label, _, rows in PUBLISHED
            if (task, backbone) in rows]
