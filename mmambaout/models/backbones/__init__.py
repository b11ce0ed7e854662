from .mambaout import MambaOut

__all__ = ['MambaOut']
