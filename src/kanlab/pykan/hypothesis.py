"""pykan's ``kan.hypothesis``: separability and symmetry tests, the tree converter."""
from ..hypothesis import *  # noqa: F401,F403
