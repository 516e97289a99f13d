"""Glance v2 moved to `glance_images.py` for one commit, so that git follows the file
into the controller that keeps most of it; the next commit splits it by controller.

Until then this name is that module itself: tests replace `glance.image_view`.
"""

import sys

from volimg.sandbox import glance_images
from volimg.sandbox.glance_images import Glance, store_data

__all__ = ["Glance", "store_data"]

sys.modules[__name__] = glance_images
