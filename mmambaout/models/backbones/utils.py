"""Argument checks shared by the backbones: errors that name the value and the fix."""
from typing import Dict, Sequence, Tuple, Union


def check_arch(arch: Union[str, dict], settings: Dict[str, dict], owner: str) -> dict:
    """Resolve an arch name or dict against ``settings``; unknown names list the valid ones."""
    required = set(next(iter(settings.values())))
    if isinstance(arch, str):
        if arch not in settings:
            raise ValueError(f"Unknown {owner} arch '{arch}'. Valid names: {sorted(settings)}, "
                             f"or a dict with keys {sorted(required)}.")
        return dict(settings[arch])
    if not isinstance(arch, dict) or not required <= set(arch):
        raise ValueError(f'{owner} arch must be one of {sorted(settings)} or a dict with keys '
                         f'{sorted(required)}, got {arch!r}.')
    lengths = {len(arch[k]) for k in ('depths', 'dims') if k in arch}
    if len(lengths) != 1:
        raise ValueError(f'{owner} arch: depths and dims must have the same length, got {arch!r}.')
    return dict(arch)


def check_out_indices(out_indices: Sequence[int], num_stages: int) -> Tuple[int, ...]:
    """Normalise negative indices; reject out-of-range, repeated or empty choices."""
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    valid = range(-num_stages, num_stages)
    if not out_indices or any(not isinstance(i, int) or i not in valid for i in out_indices):
        raise ValueError(f'out_indices must be stage indices in 0..{num_stages - 1} '
                         f'(or negative from the end), got {out_indices!r}.')
    normalised = tuple(i % num_stages for i in out_indices)
    if len(set(normalised)) != len(normalised) or list(normalised) != sorted(normalised):
        raise ValueError(f'out_indices must be increasing without repeats, got {out_indices!r}.')
    return normalised
