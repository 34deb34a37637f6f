from ._core import build_info
