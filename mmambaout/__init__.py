"""mmambaout: MambaOut and VMamba-style backbones for MMDetection 3.x and MMSegmentation 1.x.

Configs load it with ``custom_imports=dict(imports=['mmambaout'], allow_failed_imports=False)``;
importing registers every model in both toolboxes' registries.
"""
from . import models  # noqa: F401  (registers the backbones)

__version__ = '0.1.0'
