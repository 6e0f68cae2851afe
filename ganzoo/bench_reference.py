"""The reference side of ``ganzoo bench``: the same networks trained the way the canonical
PyTorch DCGAN example does it (per-item dataset of PIL images, torchvision transforms, a
2-worker DataLoader, default Adam, BCE, ``.item()`` every step). See :mod:`ganzoo.bench`."""
from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from .images import pixel_range

if TYPE_CHECKING:
    from .bench import BenchConfig

# -- 2. the reference loop ---------------------------------------------------------------------
class PerItemDataset(torch.utils.data.Dataset):
    """The usual per-item dataset: like torchvision's MNIST, each ``__getitem__`` turns one
    uint8 image into a PIL image and runs the transform on it (points are returned as they are)."""

    def __init__(self, data: torch.Tensor, labels: torch.Tensor | None, transform=None):
        self.data, self.labels, self.transform = data, labels, transform
        self.is_image = data.dtype == torch.uint8 and data.dim() == 4

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x = self.data[i]
        if self.is_image:
            from PIL import Image

            arr = x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
            x = Image.fromarray(arr)
            if self.transform is not None:
                x = self.transform(x)
        return x, (int(self.labels[i]) if self.labels is not None else -1)


def reference_transform(image_size: int | None, native_hw: tuple[int, int], channels: int,
                        output_range=(-1.0, 1.0)):
    """``[Resize(S)] + ToTensor + Normalize`` mapping [0, 1] to the generator's output range
    (``Normalize((0.5,), (0.5,))`` for tanh), as in the canonical DCGAN example."""
    from torchvision import transforms

    lo, hi = pixel_range(output_range)
    steps = []
    if image_size and tuple(native_hw) != (image_size, image_size):
        steps.append(transforms.Resize(image_size))
    steps += [transforms.ToTensor(),
              transforms.Normalize((-lo / (hi - lo),) * channels, (1.0 / (hi - lo),) * channels)]
    return transforms.Compose(steps)


class ReferenceLoop:
    """The canonical PyTorch DCGAN training loop around ganzoo-built G and D.

    ``nn.BCEWithLogitsLoss`` on D's logits is ``nn.BCELoss`` on ``sigmoid(logits)``
    (the example's D ends in a sigmoid; ganzoo's D returns logits), fused into one
    numerically stable op; the objective and the gradients are the same.
    """

    def __init__(self, arch: str, options: dict, dataset, cfg: BenchConfig, device: torch.device):
        import ganzoo

        self.device, self.batch_size = device, cfg.batch_size
        torch.manual_seed(cfg.seed)  # the same initial weights as ganzoo's run
        self.G = ganzoo.create_generator(arch, **options).to(device)
        self.D = ganzoo.create_discriminator(arch, **options).to(device)
        self.conditional = bool(options.get("num_classes"))
        self.criterion = nn.BCEWithLogitsLoss()
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        data, labels = dataset.data, getattr(dataset, "labels", None)
        if cfg.limit_data is not None:
            data = data[:cfg.limit_data]
            labels = labels[:cfg.limit_data] if labels is not None else None
        transform = None
        if data.dtype == torch.uint8 and data.dim() == 4:
            transform = reference_transform(cfg.image_size, tuple(data.shape[-2:]), data.shape[1],
                                            self.G.output_range)
        self.dataset = PerItemDataset(data.cpu(), None if labels is None else labels.cpu(), transform)
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch_size,
                                                  shuffle=True, num_workers=cfg.workers,
                                                  drop_last=True)
        self._it: Iterator | None = None
        self.history: list[tuple[float, float]] = []

    def next_batch(self):
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:  # a new epoch, as the example's `for epoch ...: for data in loader`
            self._it = iter(self.loader)
            return next(self._it)

    def close(self):
        self._it = None  # shuts the worker processes down
        gc.collect()

    def step(self, data) -> tuple[float, float]:
        netG, netD, criterion, device = self.G, self.D, self.criterion, self.device
        # (1) Update D: maximise log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real = data[0].to(device)
        b = real.size(0)
        y = data[1].to(device) if self.conditional else None
        label = torch.full((b,), 1.0, dtype=real.dtype, device=device)
        output = netD(real, y)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(b, netG.latent_dim, device=device)
        y_fake = netG.sample_labels(b, device=device)
        fake = netG(noise, y_fake)
        label.fill_(0.0)
        output = netD(fake.detach(), y_fake)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.opt_d.step()
        # (2) Update G: maximise log(D(G(z)))
        netG.zero_grad()
        label.fill_(1.0)  # fake labels are real for the generator cost
        output = netD(fake, y_fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.opt_g.step()
        losses = (errD.item(), errG.item())  # the example prints these every step
        del D_x, D_G_z1, D_G_z2
        self.history.append(losses)
        return losses
