"""Small PyTorch networks in the style of public architectures, built without downloads.

ResNet (conv, batch norm, residual adds, max and global pooling), MobileNetV3 (depthwise and
grouped convs, HardSwish, HardSigmoid, squeeze-excitation) and a BERT encoder (embeddings,
attention with a mask, LayerNorm, GELU); then DenseNet, Inception, SqueezeNet, ShuffleNetV2,
AlexNet (LRN), VGG, a GPT-2 decoder and a ViT, each using the operators its public counterpart's
export does. Random weights; ``eval()`` mode.
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """torchvision's ResNet-18 layout, narrower: widths ``(w, 2w, 4w, 8w)``."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        layers, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            layers += [_Block(cin, cout, 1 if i == 0 else 2), _Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, stride: int, se: bool) -> None:
        super().__init__()
        self.expand = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
        )
        self.se = (
            nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(hidden, hidden // 4, 1),
                nn.ReLU(),
                nn.Conv2d(hidden // 4, hidden, 1),
                nn.Hardsigmoid(),
            )
            if se
            else None
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.depthwise(self.expand(x))
        if self.se is not None:
            y = y * self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """MobileNetV3-small's building blocks, a few of them."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.blocks = nn.Sequential(
            _InvertedResidual(16, 64, 24, 2, False),
            _InvertedResidual(24, 72, 24, 1, True),
            _InvertedResidual(24, 96, 40, 2, True),
            nn.Conv2d(40, 64, 1, groups=4),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 128),
            nn.Hardswish(),
            nn.Dropout(0.2),
            nn.Linear(128, classes),
        )

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class Bert(nn.Module):
    """A BERT encoder: token, position and type embeddings, masked self-attention layers."""

    def __init__(
        self,
        vocab: int = 1000,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 4,
        max_len: int = 128,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_len, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(_BertLayer(hidden, heads) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)

    def forward(self, input_ids, attention_mask):
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        h = self.norm(
            self.word(input_ids)
            + self.position(positions)
            + self.token_type(torch.zeros_like(input_ids))
        )
        mask = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -10000.0
        for layer in self.layers:
            h = layer(h, mask)
        return h, torch.tanh(self.pooler(h[:, 0]))


class _BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ff1 = nn.Linear(hidden, 4 * hidden)
        self.ff2 = nn.Linear(4 * hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, h, mask):
        b, s, d = h.shape
        q, k, v = self.qkv(h).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5 + mask
        context = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, s, d)
        h = self.norm1(h + self.out(context))
        return self.norm2(h + self.ff2(nn.functional.gelu(self.ff1(h))))


# ---- the rest of the public collections' architectures, small and faithful


class DenseNet(nn.Module):
    """torchvision's DenseNet: dense blocks (BN-ReLU-Conv, features concatenated), transitions
    with average pooling, and the stem's max pool."""

    def __init__(
        self, growth: int = 8, blocks: tuple[int, ...] = (2, 2), classes: int = 10
    ) -> None:
        super().__init__()
        channels = 2 * growth
        features: list[nn.Module] = [
            nn.Conv2d(3, channels, 7, 2, 3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        ]
        for i, count in enumerate(blocks):
            features.append(_DenseBlock(channels, growth, count))
            channels += count * growth
            if i != len(blocks) - 1:
                features += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(),
                    nn.Conv2d(channels, channels // 2, 1, bias=False),
                    nn.AvgPool2d(2, 2),
                ]
                channels //= 2
        features.append(nn.BatchNorm2d(channels))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x):
        y = nn.functional.adaptive_avg_pool2d(torch.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(y, 1))


class _DenseBlock(nn.Module):
    def __init__(self, cin: int, growth: int, count: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(cin + i * growth),
                nn.ReLU(),
                nn.Conv2d(cin + i * growth, 4 * growth, 1, bias=False),
                nn.BatchNorm2d(4 * growth),
                nn.ReLU(),
                nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
            )
            for i in range(count)
        )

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Inception(nn.Module):
    """GoogLeNet/Inception-v3 style: four parallel branches concatenated, one of them an
    average pool with padding (``count_include_pad`` as torchvision's Inception-v3 leaves it),
    factorised 1x7/7x1 convolutions and a ceil-mode max pool."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(_ConvBN(3, 16, 3, stride=2), nn.MaxPool2d(3, 2, ceil_mode=True))
        self.mixed = nn.Sequential(_InceptionBlock(16, 8), _InceptionBlock(32, 8))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        y = nn.functional.adaptive_avg_pool2d(self.mixed(self.stem(x)), 1)
        return self.fc(torch.flatten(y, 1))


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(cout, eps=0.001),
            nn.ReLU(),
        )


class _InceptionBlock(nn.Module):
    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.b1 = _ConvBN(cin, width, 1)
        self.b7 = nn.Sequential(
            _ConvBN(cin, width, 1),
            _ConvBN(width, width, (1, 7), padding=(0, 3)),
            _ConvBN(width, width, (7, 1), padding=(3, 0)),
        )
        self.b3 = nn.Sequential(_ConvBN(cin, width, 1), _ConvBN(width, width, 3, padding=1))
        self.pool = _ConvBN(cin, width, 1)

    def forward(self, x):
        pooled = nn.functional.avg_pool2d(x, 3, 1, 1)
        return torch.cat([self.b1(x), self.b7(x), self.b3(x), self.pool(pooled)], 1)


class SqueezeNet(nn.Module):
    """torchvision's SqueezeNet 1.1: Fire modules (squeeze, two expands concatenated), ceil-mode
    max pools, a convolutional classifier and global average pooling."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(16, 4, 8),
            _Fire(16, 4, 8),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(16, 8, 16),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(32, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1))
        )

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class _Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1(s)), torch.relu(self.expand3(s))], 1)


def channel_shuffle(x, groups: int):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleNet(nn.Module):
    """torchvision's ShuffleNetV2: channel split (``chunk``), depthwise convs, concat and
    channel shuffle (view, transpose, view)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        self.stages = nn.Sequential(
            _ShuffleUnit(16, 32, 2), _ShuffleUnit(32, 32, 1), _ShuffleUnit(32, 64, 2)
        )
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        return self.fc(self.stages(self.stem(x)).mean([2, 3]))


class _ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(),
            )
        branch_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch_in, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class AlexNet(nn.Module):
    """The original AlexNet with local response normalisation, as torchvision's AlexNet/VGG:
    conv-ReLU-LRN-maxpool features, adaptive average pooling to a fixed grid, a dropout MLP."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, 2, 2),
            nn.ReLU(),
            nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.LocalResponseNorm(5),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, classes)
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class VGG(nn.Module):
    """torchvision's VGG: conv-ReLU stacks and max pools, adaptive average pooling to a grid
    smaller than the features (an AveragePool for a static size), a dropout MLP."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in (8, "M", 16, "M", 32, 32, "M"):
            if cout == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(32 * 2 * 2, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, classes)
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class GPT2(nn.Module):
    """A GPT-2 decoder: token and position embeddings, causal self-attention (a ``tril``
    buffer and ``masked_fill``/``where``), fused QKV split, the tanh GELU written with ``pow``,
    the exact GELU (``erf``) in alternate layers, LayerNorm, a tied LM head."""

    def __init__(
        self, vocab: int = 500, hidden: int = 64, layers: int = 2, heads: int = 4, max_len: int = 64
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(
            _GPT2Block(hidden, heads, max_len, exact_gelu=i % 2 == 1) for i in range(layers)
        )
        self.ln_f = nn.LayerNorm(hidden)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.wte(input_ids) + self.wpe(positions)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h) @ self.wte.weight.t()


class _GPT2Block(nn.Module):
    def __init__(self, hidden: int, heads: int, max_len: int, exact_gelu: bool) -> None:
        super().__init__()
        self.heads = heads
        self.exact_gelu = exact_gelu
        self.ln_1 = nn.LayerNorm(hidden)
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.ln_2 = nn.LayerNorm(hidden)
        self.c_fc = nn.Linear(hidden, 4 * hidden)
        self.c_out = nn.Linear(4 * hidden, hidden)
        self.register_buffer(
            "bias",
            torch.tril(torch.ones(max_len, max_len, dtype=torch.bool)).view(1, 1, max_len, max_len),
            persistent=False,
        )

    def forward(self, h):
        b, s, d = h.shape
        q, k, v = self.c_attn(self.ln_1(h)).split(d, dim=2)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = torch.matmul(q, k.transpose(-1, -2)) / torch.tensor(d // self.heads) ** 0.5
        if self.exact_gelu:  # the mask computed in the graph (Trilu) rather than a buffer
            causal = torch.ones(s, s, dtype=torch.bool, device=h.device).tril()
        else:
            causal = self.bias[:, :, :s, :s]
        scores = torch.where(causal, scores, torch.tensor(torch.finfo(scores.dtype).min))
        context = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, s, d)
        h = h + self.c_proj(context)
        x = self.c_fc(self.ln_2(h))
        if self.exact_gelu:
            x = nn.functional.gelu(x)
        else:  # GPT-2's own "gelu_new"
            x = (
                0.5
                * x
                * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * torch.pow(x, 3.0))))
            )
        return h + self.c_out(x)


class ViT(nn.Module):
    """torchvision's ViT: a strided patch convolution, the class token concatenated, position
    embeddings, pre-norm encoder layers (``nn.MultiheadAttention``), the class token's head."""

    def __init__(
        self,
        image: int = 32,
        patch: int = 8,
        hidden: int = 48,
        layers: int = 2,
        heads: int = 4,
        classes: int = 10,
    ) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, hidden, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, hidden) * 0.02)
        self.layers = nn.ModuleList(_ViTLayer(hidden, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(hidden, eps=1e-6)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        y = self.patch(x).flatten(2).transpose(1, 2)
        y = torch.cat([self.cls.expand(x.shape[0], -1, -1), y], dim=1) + self.pos
        for layer in self.layers:
            y = layer(y)
        return self.head(self.ln(y)[:, 0])


class _ViTLayer(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden)
        )

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))
