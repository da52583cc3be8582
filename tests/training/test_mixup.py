"""--mixup-alpha: what the network sees in training is a blend of two images of the batch, and its loss
the same blend of the losses against both labels."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.loop import train_one_epoch
from pneumonia_zoo.training.mixup import Mixup, create_mixup
from pneumonia_zoo.training.schedules import ScheduleParams, Scheduler


def test_a_batch_is_blended_with_a_shuffle_of_itself() -> None:
    images = torch.arange(8 * 3, dtype=torch.float32).reshape(8, 3)
    targets = torch.tensor([0, 1, 0, 1, 1, 1, 0, 0])
    mixed = Mixup(0.4, seed=3)(images, targets)
    assert 0 <= mixed.share <= 1 and mixed.share not in (0.0, 1.0)
    # each blended row is share x its own row + (1 - share) x the row whose label is its partner label
    partner_rows = (mixed.images - mixed.share * images) / (1 - mixed.share)
    rows = [int(torch.argmin((images - row).abs().sum(1))) for row in partner_rows]
    torch.testing.assert_close(partner_rows, images[rows])
    assert sorted(rows) == list(range(8)) and rows != list(range(8))
    assert torch.equal(mixed.partners, targets[rows])


def test_the_loss_is_the_blend_of_both_labels_losses() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([2.0, 0.5]), label_smoothing=0.05)
    mixed = Mixup(0.2, seed=0)(torch.zeros(3, 1), torch.tensor([0, 1, 1]))
    expected = mixed.share * loss_fn(logits, mixed.targets) + (1 - mixed.share) * loss_fn(
        logits, mixed.partners
    )
    torch.testing.assert_close(mixed.loss(loss_fn, logits), expected)


def test_the_same_seed_draws_the_same_blends() -> None:
    images, targets = torch.randn(6, 2), torch.arange(6) % 2
    first, second = Mixup(0.3, seed=7), Mixup(0.3, seed=7)
    for _ in range(3):
        a, b = first(images, targets), second(images, targets)
        assert a.share == b.share and torch.equal(a.images, b.images)


def test_zero_alpha_is_off() -> None:
    assert create_mixup(0.0, seed=0) is None
    assert isinstance(create_mixup(0.2, seed=0), Mixup)


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_training_sees_blends_only_with_mixup(alpha: float) -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(32, 5), torch.arange(32) % 2
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    model = nn.Linear(5, 2)
    seen: list[torch.Tensor] = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(
        model,
        loader,
        optimizer,
        Scheduler("constant", optimizer, ScheduleParams(epochs=1), len(loader)),
        nn.CrossEntropyLoss(),
        Runtime(torch.device("cpu")),
        channels_last=False,
        description="test",
        quiet=True,
        mixup=create_mixup(alpha, seed=1),
    )
    originals = [torch.equal(batch, images[i * 8 : (i + 1) * 8]) for i, batch in enumerate(seen)]
    assert len(seen) == 4
    assert all(originals) if alpha == 0 else not any(originals)
