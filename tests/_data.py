"""Skip what needs Debian's Fashion-MNIST when it is not installed (`make install` installs it)."""

import pytest

from mpdit_bench.data.fashion_mnist import DatasetMissing, load_arrays

try:
    load_arrays("test")
    HAVE_FASHION_MNIST = True
except DatasetMissing:
    HAVE_FASHION_MNIST = False

needs_fashion_mnist = pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="dataset-fashion-mnist not installed")
