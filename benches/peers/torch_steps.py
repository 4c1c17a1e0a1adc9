"""PyTorch's side of `cargo bench --bench versus_pytorch`: the same training steps as pretext's,
timed the same way (median of REPEATS steps after WARMUP), on CPU with the thread count given.

Prints one JSON object: {"torch": version, "threads": n, "steps": {name: milliseconds}}.
"""

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


def time_steps(model, loss_fn, optimizer):
    times = []
    for i in range(WARMUP + REPEATS):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model)
        loss.backward()
        optimizer.step()
        loss.item()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batch = 128
    x = torch.randn(batch, 1, 28, 28)
    steps = {}

    # The reference step: no batch norm, 4 classes, Adam.
    model = nn.Sequential(cnn(False), nn.Linear(128, 4))
    y = torch.randint(0, 4, (batch,))
    steps["reference-cnn"] = time_steps(
        model, lambda m: F.cross_entropy(m(x), y), torch.optim.Adam(model.parameters(), 1e-3)
    )

    # Rotation: the batch-norm CNN on all four rotations of each image (4 x batch), AdamW.
    model = nn.Sequential(cnn(True), nn.Linear(128, 4))
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    y4 = torch.arange(4).repeat_interleave(batch)
    steps["rotation-cnn"] = time_steps(
        model,
        lambda m: F.cross_entropy(m(rotated), y4),
        torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05),
    )

    # SimCLR: both views through the encoder in one pass, projection MLP 128-128-64, NT-Xent.
    encoder = cnn(True)
    head = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    model = nn.Sequential(encoder, head)
    views = torch.randn(2 * batch, 1, 28, 28)

    def simclr_loss(m):
        z = m(views)
        return nt_xent(z[:batch], z[batch:], 0.5)

    steps["simclr-cnn"] = time_steps(
        model, simclr_loss, torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05)
    )
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
        model,
        lambda m: m(visible, visible_idx, restore, patches, mask),
        torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05),
    )
    print(json.dumps({"torch": torch.__version__, "threads": threads, "steps": steps}))


def blocks(dim, heads, depth):
    layer = nn.TransformerEncoderLayer(
        dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
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
