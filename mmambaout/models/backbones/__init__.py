from .mambaout import MambaOut
from .vmamba import VMamba

__all__ = ['MambaOut', 'VMamba']
