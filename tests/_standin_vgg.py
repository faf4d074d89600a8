"""A stand-in for ``sma_vgg8_dvs128`` (built on another branch), registered only when the real one is absent.

Same layout as sma.md §5 (five conv blocks with a multiscale branch in blocks 2-3, BN, LIF, max-pool; pooled
3x3 head with two LIF hidden layers), so the demo's cost and accuracy are close to the real model's.
"""
import torch
from torch import nn

from spikescope.layers.time import TAdaptiveAvgPool2d, TBatchNorm2d, TConv2d, TimeSharedDropout, TMaxPool2d
from spikescope.models import list_models, register_model
from spikescope.neurons import LIF


class _Multiscale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.branches = nn.ModuleList(TConv2d(c, c, k, padding=k // 2) for k in (1, 3, 5, 7))

    def forward(self, x):
        return x + sum(torch.sigmoid(b(x)) * x for b in self.branches) / 4


class StandInVGG(nn.Module):
    def __init__(self, timesteps=16, num_classes=11, widths=(64, 128, 256, 512, 512), hidden=(2048, 1024),
                 in_channels=2, sma=True, azo=True, rcr=10, rtr=4):
        super().__init__()
        blocks, c_in = [], in_channels
        for i, c in enumerate(widths):
            layers = [TConv2d(c_in, c, 3, padding=1)]
            if sma and i in (1, 2):
                layers.append(_Multiscale(c))
            layers += [TBatchNorm2d(c), LIF(tau=2.0, detach_reset=True), TMaxPool2d(2)]
            blocks.append(nn.Sequential(*layers))
            c_in = c
        self.features = nn.Sequential(*blocks, TAdaptiveAvgPool2d(3))
        self.fc1 = nn.Linear(c_in * 9, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)
        self.lif1, self.lif2 = LIF(tau=2.0, detach_reset=True), LIF(tau=2.0, detach_reset=True)
        self.drop1, self.drop2 = TimeSharedDropout(0.5), TimeSharedDropout(0.5)

    def forward(self, x):
        x = self.features(x).flatten(2)
        x = self.drop1(self.lif1(self.fc1(x)))
        x = self.drop2(self.lif2(self.fc2(x)))
        return self.fc3(x)


def ensure_registered():
    if "sma_vgg8_dvs128" not in list_models():
        register_model("sma_vgg8_dvs128", input_size=(2, 128, 128), timesteps=16, input_kind="events",
                       family="sma_vgg")(lambda **kw: StandInVGG(**kw))
