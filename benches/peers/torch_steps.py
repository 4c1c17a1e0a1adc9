"""PyTorch's side of `cargo bench --bench versus_pytorch`: the same training steps as pretext's,
timed the same way (median of REPEATS steps after WARMUP), on CPU with the thread count given.

Arguments: the thread count, then optionally the comma-separated steps to time (default all).
Also times a 2048x2048 fp32 matrix product (`gemm`). Prints one JSON object:
{"torch": version, "threads": n, "steps": {name: milliseconds}}.
"""

import copy
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

WARMUP = 3
REPEATS = 10


def cnn(batch_norm: bool) -> nn.Sequential:
    """pretext's default CNN encoder: conv 1->32, pool, conv 32->64, pool, linear 3136->128."""
    layers = []
    c_in = 1
    for c_out in (32, 64):
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers += [nn.MaxPool2d(2), nn.ReLU()]
        c_in = c_out
    layers += [nn.Flatten(), nn.Linear(3136, 128), nn.ReLU()]
    return nn.Sequential(*layers)


def nt_xent(z1, z2, temperature):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim - torch.eye(2 * n) * 1e9
    targets = (torch.arange(2 * n) + n) % (2 * n)
    return F.cross_entropy(sim, targets)


def time_steps(model, loss_fn, optimizer, after=None):
    times = []
    for i in range(WARMUP + REPEATS):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model)
        loss.backward()
        optimizer.step()
        if after is not None:
            after()
        loss.item()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def mlp(widths, hidden_norm, output_norm=False):
    """pretext's MLP heads: linear layers (no bias before a batch norm), batch norm in the hidden
    layers when asked, ReLU between layers, an affine-free batch norm after the last if asked."""
    layers = []
    last = len(widths) - 2
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        norm = hidden_norm if i < last else output_norm
        layers.append(nn.Linear(a, b, bias=not norm))
        if norm:
            layers.append(nn.BatchNorm1d(b, affine=i < last))
        if i < last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def byol_loss(p, k):
    return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(k, dim=1)).sum(dim=1)).mean()


def info_nce(q, k, temperature):
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0])) * 2 * temperature


def off_diagonal(m):
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg_loss(z1, z2):
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)

    def variance(z):
        return F.relu(1 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()

    def covariance(z):
        z = z - z.mean(dim=0)
        cov = z.t() @ z / (n - 1)
        return off_diagonal(cov).pow(2).sum() / d

    return (
        25 * invariance
        + 25 * (variance(z1) + variance(z2)) / 2
        + covariance(z1)
        + covariance(z2)
    )


def barlow_loss(z1, z2, lambd=5e-3):
    n, d = z1.shape

    def standardise(z):
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + 1e-5)

    c = standardise(z1).t() @ standardise(z2) / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    return on + lambd * off_diagonal(c).pow(2).sum()


class Joint(nn.Module):
    """The two-view methods as pretext builds them on the batch-norm CNN (128 features)."""

    def __init__(self, method):
        super().__init__()
        self.method = method
        self.encoder = cnn(True)
        projector, hidden_norm, output_norm = {
            "simclr": ([128, 128, 64], False, False),
            "byol": ([128, 1024, 128], True, False),
            "moco-v3": ([128, 1024, 1024, 128], True, True),
            "vicreg": ([128, 1024, 1024, 1024], True, False),
            "barlow-twins": ([128, 1024, 1024, 1024], True, False),
        }[method]
        self.projector = mlp(projector, hidden_norm, output_norm)
        self.predictor = None
        if method in ("byol", "moco-v3"):
            self.predictor = mlp([128, 1024, 128], True)
            self.target = copy.deepcopy(nn.Sequential(self.encoder, self.projector))
            for p in self.target.parameters():
                p.requires_grad_(False)

    def forward(self, views):
        n = views.shape[0] // 2
        z = self.projector(self.encoder(views))
        if self.method == "simclr":
            return nt_xent(z[:n], z[n:], 0.5)
        if self.method == "vicreg":
            return vicreg_loss(z[:n], z[n:])
        if self.method == "barlow-twins":
            return barlow_loss(z[:n], z[n:])
        p = self.predictor(z)
        with torch.no_grad():
            k = self.target(views)
        if self.method == "byol":
            return byol_loss(p[:n], k[n:]) + byol_loss(p[n:], k[:n])
        return info_nce(p[:n], k[n:], 0.2) + info_nce(p[n:], k[:n], 0.2)

    @torch.no_grad()
    def update_target(self, m=0.99):
        if self.predictor is None:
            return
        online = list(self.encoder.parameters()) + list(self.projector.parameters())
        for t, o in zip(self.target.parameters(), online):
            t.mul_(m).add_(o, alpha=1 - m)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + identity)


def resnet8(channels=3):
    """pretext's ResNet-8: a 3x3 stem, one basic block per stage of widths 32, 64, 128 (stride 2
    between stages), global average pooling, fc 128->128 with ReLU."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, 1, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        BasicBlock(32, 32, 1),
        BasicBlock(32, 64, 2),
        BasicBlock(64, 128, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 128),
        nn.ReLU(),
    )


class Mlm(nn.Module):
    """pretext's text Transformer (dim 64, 2 pre-norm blocks of 4 heads, MLP ratio 4, learned
    positions, a final layer norm) with BERT's head tied to the token embeddings."""

    def __init__(self, vocab=4000, max_len=64, dim=64):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        nn.init.normal_(self.tokens.weight, std=0.02)
        self.position = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = blocks(dim, 4, 2, ratio=4)
        self.norm = nn.LayerNorm(dim)
        self.transform = nn.Linear(dim, dim)
        self.head_norm = nn.LayerNorm(dim)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, tokens, padding, positions, targets):
        b, n = tokens.shape
        x = self.tokens(tokens) + self.position[:n]
        x = self.norm(self.blocks(x, src_key_padding_mask=padding))
        picked = x.reshape(b * n, -1)[positions]
        h = self.head_norm(F.gelu(self.transform(picked)))
        return F.cross_entropy(h @ self.tokens.weight.t() + self.bias, targets)


def time_gemm(n=2048):
    a, b = torch.randn(n, n), torch.randn(n, n)
    times = []
    for i in range(7):
        start = time.perf_counter()
        a @ b
        if i >= 2:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    wanted = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batch = 128
    x = torch.randn(batch, 1, 28, 28)
    steps = {"gemm": time_gemm()}

    def want(name):
        return wanted is None or name in wanted

    def adamw(model, weight_decay=0.05, lr=1e-3):
        return torch.optim.AdamW(model.parameters(), lr, weight_decay=weight_decay)

    if want("reference-cnn"):
        # The reference step: no batch norm, 4 classes, Adam.
        model = nn.Sequential(cnn(False), nn.Linear(128, 4))
        y = torch.randint(0, 4, (batch,))
        steps["reference-cnn"] = time_steps(
            model, lambda m: F.cross_entropy(m(x), y), torch.optim.Adam(model.parameters(), 1e-3)
        )

    if want("rotation-cnn"):
        # Rotation: the batch-norm CNN on all four rotations of each image (4 x batch), AdamW.
        model = nn.Sequential(cnn(True), nn.Linear(128, 4))
        rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        y4 = torch.arange(4).repeat_interleave(batch)
        steps["rotation-cnn"] = time_steps(
            model, lambda m: F.cross_entropy(m(rotated), y4), adamw(model)
        )

    # The two-view methods: both views through the encoder in one pass.
    views = torch.randn(2 * batch, 1, 28, 28)
    for method in ("simclr", "byol", "moco-v3", "vicreg", "barlow-twins"):
        if want(f"{method}-cnn"):
            model = Joint(method)
            steps[f"{method}-cnn"] = time_steps(
                model, lambda m: m(views), adamw(model), after=model.update_target
            )

    if want("resnet"):
        model = nn.Sequential(resnet8(), nn.Linear(128, 10))
        images = torch.randn(batch, 3, 32, 32)
        y10 = torch.arange(batch) % 10
        steps["resnet"] = time_steps(
            model, lambda m: F.cross_entropy(m(images), y10), torch.optim.Adam(model.parameters(), 1e-3)
        )

    if want("mae-vit"):
        # MAE: ViT-tiny encoder (4x4 patches of 28x28, dim 64, depth 4, 4 heads, MLP ratio 2,
        # pre-norm, no dropout) on the 12 visible patches of 49, a one-block decoder of dim 64,
        # mean squared error on the masked patches.
        model = Mae()
        patches = torch.randn(batch, 49, 16)
        order = torch.argsort(torch.rand(batch, 49), dim=1)
        visible_idx, masked = order[:, :12], order[:, 12:]
        mask = torch.zeros(batch, 49).scatter_(1, masked, 1.0)
        restore = torch.argsort(order, dim=1)
        visible = torch.gather(patches, 1, visible_idx[..., None].expand(-1, -1, 16))
        steps["mae-vit"] = time_steps(
            model, lambda m: m(visible, visible_idx, restore, patches, mask), adamw(model)
        )

    if want("text-mlm"):
        # 32 sequences of 64 tokens, every seventh position predicted, AdamW as configs/mlm.toml.
        model = Mlm()
        tokens = torch.randint(5, 4000, (32, 64))
        padding = torch.zeros(32, 64, dtype=torch.bool)
        positions = torch.arange(0, 32 * 64, 7)
        targets = torch.randint(5, 4000, (positions.shape[0],))
        steps["text-mlm"] = time_steps(
            model,
            lambda m: m(tokens, padding, positions, targets),
            adamw(model, weight_decay=0.01, lr=2e-3),
        )
    print(json.dumps({"torch": torch.__version__, "threads": threads, "steps": steps}))


def blocks(dim, heads, depth, ratio=2):
    layer = nn.TransformerEncoderLayer(
        dim, heads, ratio * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class Mae(nn.Module):
    def __init__(self, dim=64, patches=49, patch_dim=16):
        super().__init__()
        self.embed = nn.Linear(patch_dim, dim)
        self.position = nn.Parameter(torch.randn(patches, dim) * 0.02)
        self.encoder = blocks(dim, 4, 4)
        self.norm = nn.LayerNorm(dim)
        self.decoder_embed = nn.Linear(dim, dim)
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.decoder_position = nn.Parameter(torch.randn(patches, dim) * 0.02)
        self.decoder = blocks(dim, 4, 1)
        self.decoder_norm = nn.LayerNorm(dim)
        self.predict = nn.Linear(dim, patch_dim)

    def forward(self, visible, visible_idx, restore, targets, mask):
        b, v, _ = visible.shape
        x = self.embed(visible) + self.position[visible_idx]
        x = self.decoder_embed(self.norm(self.encoder(x)))
        n, d = restore.shape[1], x.shape[2]
        x = torch.cat([x, self.mask_token.expand(b, n - v, d)], dim=1)
        x = torch.gather(x, 1, restore[..., None].expand(-1, -1, d)) + self.decoder_position
        pred = self.predict(self.decoder_norm(self.decoder(x)))
        per_patch = ((pred - targets) ** 2).mean(dim=2)
        return (per_patch * mask).sum() / mask.sum()


if __name__ == "__main__":
    main()
