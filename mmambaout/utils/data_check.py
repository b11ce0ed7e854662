"""Check, before a runner is built, that the files a config's datasets read are there.

Without this, a missing dataset surfaces deep inside dataset construction (after the model is
built, sometimes after the first epoch for validation data) as a bare path. The error raised
here names every missing path and the folder layout the dataset type expects.

COCO-format annotation files are read too (one extra JSON parse at start-up): a file that is not
COCO JSON otherwise fails inside pycocotools without its name, and an image it lists but that is
missing fails only when a batch reaches it, hours into an epoch.
"""
import json
import os.path as osp
from typing import Iterator, List, Tuple

# Dataset type → the layout its toolbox documents, relative to the working directory.
EXPECTED_LAYOUTS = {
    'CocoDataset': ('data/coco/\n'
                    '  annotations/instances_train2017.json\n'
                    '  annotations/instances_val2017.json\n'
                    '  train2017/*.jpg\n'
                    '  val2017/*.jpg'),
    'ADE20KDataset': ('data/ade/ADEChallengeData2016/\n'
                      '  images/training/*.jpg\n'
                      '  images/validation/*.jpg\n'
                      '  annotations/training/*.png\n'
                      '  annotations/validation/*.png'),
}

# Dataset types whose ann_file is COCO JSON listing images under data_prefix['img'].
COCO_FORMAT_DATASETS = ('CocoDataset', )
COCO_KEYS = ('images', 'annotations', 'categories')
MISSING_IMAGES_SHOWN = 5


def leaf_datasets(dataset_cfg: dict) -> Iterator[dict]:
    """The datasets that read files: wrappers (Repeat, Concat, ClassBalanced, ...) unwrapped."""
    if 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'])
    elif 'datasets' in dataset_cfg:
        for inner in dataset_cfg['datasets']:
            yield from leaf_datasets(inner)
    else:
        yield dataset_cfg


def dataset_paths(dataset_cfg: dict) -> List[Tuple[str, str]]:
    """(path, role) of the annotation file and every data folder, joined with ``data_root``
    the way mmengine's ``BaseDataset`` joins them."""
    root = dataset_cfg.get('data_root') or ''
    paths = []
    if dataset_cfg.get('ann_file'):  # mmseg folder datasets have ann_file=''
        paths.append((osp.join(root, dataset_cfg['ann_file']), 'annotation file'))
    for key, prefix in (dataset_cfg.get('data_prefix') or {}).items():
        if prefix:
            paths.append((osp.join(root, prefix), f'{key} folder'))
    return paths


def missing_data_message(dataloader_key: str, dataset_type: str, missing) -> str:
    lines = [f'{dataloader_key}: {dataset_type} files not found:']
    lines += [f'  {path}  ({role})' for path, role in missing]
    if dataset_type in EXPECTED_LAYOUTS:
        lines += [f"{dataset_type}'s standard layout:", EXPECTED_LAYOUTS[dataset_type]]
    lines.append("Put (or symlink) the dataset there, or point the config's data_root, ann_file "
                 'and data_prefix at it, e.g. '
                 f'--cfg-options {dataloader_key}.dataset.data_root=PATH.')
    return '\n'.join(lines)


def read_coco_annotations(path: str) -> dict:
    """The contents of a COCO annotation file; ValueError naming the file if it is not one."""
    try:
        with open(path, encoding='utf-8') as file:
            annotations = json.load(file)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"Annotation file '{path}' is not valid JSON ({err}): export, copy or "
                         'download it again.') from err
    absent = [key for key in COCO_KEYS
              if not isinstance(annotations, dict) or key not in annotations]
    if absent:
        raise ValueError(
            f"Annotation file '{path}' is not a COCO annotation file: it has no "
            f"{', '.join(repr(key) for key in absent)} (COCO instance files hold the lists "
            f"{', '.join(repr(key) for key in COCO_KEYS)}). Point ann_file at the instances file.")
    return annotations


def check_coco_images(dataloader_key: str, dataset_cfg: dict) -> None:
    """Raise FileNotFoundError naming the images the annotation file lists but that are missing."""
    root = dataset_cfg.get('data_root') or ''
    ann_file = osp.join(root, dataset_cfg['ann_file'])
    image_dir = osp.join(root, (dataset_cfg.get('data_prefix') or {}).get('img', ''))
    if '://' in ann_file or '://' in image_dir:
        return
    images = read_coco_annotations(ann_file)['images']
    missing = [path for path in (osp.join(image_dir, image['file_name']) for image in images)
               if not osp.isfile(path)]
    if missing:
        shown = '\n'.join(f'  {path}' for path in missing[:MISSING_IMAGES_SHOWN])
        raise FileNotFoundError(
            f"{dataloader_key}: {len(missing)} of the {len(images)} images listed in '{ann_file}' "
            f'are missing:\n{shown}\nPut them there (copy or download the images again), or '
            'remove their entries from the annotation file.')


def check_dataset_files(cfg, dataloader_keys) -> None:
    """Raise FileNotFoundError naming the missing files of ``cfg[key].dataset`` for each key,
    and for COCO-format datasets ValueError for an annotation file that is not COCO JSON.

    Dataloaders the config leaves out or sets to None are skipped, and so are remote paths
    (``s3://...``), which only their storage backend can check.
    """
    for key in dataloader_keys:
        dataloader = cfg.get(key)
        if not dataloader:
            continue
        for dataset in leaf_datasets(dataloader['dataset']):
            missing = [(path, role) for path, role in dataset_paths(dataset)
                       if '://' not in path and not osp.exists(path)]
            if missing:
                raise FileNotFoundError(
                    missing_data_message(key, str(dataset.get('type')), missing))
            if dataset.get('type') in COCO_FORMAT_DATASETS:
                check_coco_images(key, dataset)
