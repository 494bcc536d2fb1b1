"""The third-party names pykan's modules carry into ``from kan import *``."""
import copy  # noqa: F401
import glob  # noqa: F401
import os  # noqa: F401
import random  # noqa: F401

import matplotlib.pyplot as plt  # noqa: F401
import numpy as np  # noqa: F401
import sympy  # noqa: F401
import torch  # noqa: F401
import torch.nn as nn  # noqa: F401
from sympy import *  # noqa: F401,F403
from sympy.printing import latex  # noqa: F401

try:
    from tqdm import tqdm  # noqa: F401
except ImportError:  # pragma: no cover - tqdm is a kanlab dependency
    pass
try:
    import pandas as pd  # noqa: F401
except ImportError:  # pragma: no cover - optional, as for kanlab itself
    pass
try:
    import yaml  # noqa: F401
except ImportError:  # pragma: no cover
    pass
try:
    from sklearn.linear_model import LinearRegression  # noqa: F401
except ImportError:  # pragma: no cover
    pass
import re  # noqa: F401,E402  (pykan's utils import the module over sympy's re function)
