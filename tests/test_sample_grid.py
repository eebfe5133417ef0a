"""Sample grids: balanced labels put one class per row, named on the left; other grids stay plain."""

import numpy as np
from PIL import Image

from mpdit_bench.data.fashion_mnist import CLASSES
from mpdit_bench.engine.sampling import class_names, save_grid


def _images(n: int, size: int = 28) -> np.ndarray:
    """Image i is filled with the grey level 10 + i, so its place in the grid tells which it was."""
    return np.stack([np.full((size, size, 3), 10 + i, np.uint8) for i in range(n)])


def test_balanced_grid_has_one_class_per_row_with_its_name(tmp_path):
    images = _images(30)  # three of each class, image i of class i mod 10
    path = save_grid(images, tmp_path / "g.png", nrow=10, class_names=CLASSES)
    grid = np.asarray(Image.open(path))
    margin = 6 * max(map(len, CLASSES)) + 6
    assert grid.shape == (10 * 30 + 2, margin + 3 * 30 + 2, 3)
    for cls in range(10):
        for col in range(3):
            y, x = 2 + cls * 30 + 14, margin + 2 + col * 30 + 14
            assert grid[y, x, 0] == 10 + cls + 10 * col  # row = class, column = its k-th sample
    assert grid[:, :margin].max() > 200  # the names are drawn (white) in the margin


def test_plain_grid_without_names(tmp_path):
    grid = np.asarray(Image.open(save_grid(_images(6), tmp_path / "p.png", nrow=3)))
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2, 3) and grid[2 + 30 + 14, 2 + 14, 0] == 10 + 3


def test_names_only_for_balanced_labels_of_a_known_dataset():
    assert class_names("fashion-mnist", 10, "balanced") == CLASSES
    assert class_names("fashion-mnist", 10, "random") is None
    assert class_names("latents", 1000, "balanced") is None
