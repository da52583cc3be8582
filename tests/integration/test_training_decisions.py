"""What a run decides, it decides on validation: the test labels change nothing but the test metrics;
early stopping restores the best epoch; --pretrained really starts from the weights it is given."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pneumonia_zoo.data.cache import decode_all
from pneumonia_zoo.data.pipeline import split_samples
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.evaluation.predict import predict_images
from pneumonia_zoo.stats.calibration import fit_platt
from pneumonia_zoo.stats.operating_points import choose_operating_points
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.train import train
from tests.conftest import registry_client, store_for, tiny_train_args
from tests.training_helpers import fit_on_cpu


def _run(data: Path, store_dir: Path):
    store = store_for(f"sqlite:///{store_dir / 'mlflow.db'}")
    config = TrainConfig.build(**tiny_train_args(data, epochs=2, threads=1, bootstrap=20, onnx=False))
    outcome = train(config, store, quiet=True)
    _, classifier = store.load(f"models:/pneumonia-classifier/{outcome.version}", destination=store_dir / "v")
    return outcome.metrics, classifier


def test_test_labels_change_nothing_but_test_metrics(fixture_data: Path, tmp_path: Path) -> None:
    swapped = tmp_path / "swapped"
    shutil.copytree(fixture_data, swapped)
    test = swapped / "test"
    (test / "NORMAL").rename(test / "tmp")
    (test / "PNEUMONIA").rename(test / "NORMAL")
    (test / "tmp").rename(test / "PNEUMONIA")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    metrics_a, model_a = _run(fixture_data, tmp_path / "a")
    metrics_b, model_b = _run(swapped, tmp_path / "b")
    assert model_a.config.temperature == model_b.config.temperature
    assert model_a.config.operating_points == model_b.config.operating_points
    assert model_a.config.guard == model_b.config.guard
    for key in metrics_a:
        if key.startswith(("val_", "threshold", "temperature", "best_epoch", "epochs_run")):
            assert metrics_a[key] == pytest.approx(metrics_b[key], abs=1e-9), key
    assert metrics_a["test_auc"] != pytest.approx(metrics_b["test_auc"])  # what the test labels do change


def test_operating_points_are_those_of_the_validation_predictions(
    registered_store: str, fixture_data: Path, tmp_path: Path
):
    store = store_for(registered_store)
    _, classifier = store.load("models:/pneumonia-classifier@champion", destination=tmp_path / "champion")
    info = classifier.config.info
    _, val, _ = split_samples(fixture_data, info.val_fraction, info.seed, None)
    predictions = predict_images(
        classifier, decode_all(val, Preprocessing(classifier.input_size), quiet=True)
    )
    expected = choose_operating_points(predictions.labels, predictions.probs, prior=info.prior)
    assert {k: v.threshold for k, v in expected.items()} == pytest.approx(
        {k: v.threshold for k, v in classifier.config.operating_points.items()}, abs=1e-6
    )


def test_an_earliest_split_run_decides_on_the_earliest_patients(fixture_data: Path, tmp_path: Path) -> None:
    store = store_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = TrainConfig.build(
        **tiny_train_args(fixture_data, val_split="earliest", val_fraction=0.2, bootstrap=0)
    )
    outcome = train(config, store, quiet=True)
    _, classifier = store.load(f"models:/pneumonia-classifier/{outcome.version}", destination=tmp_path / "v")
    info = classifier.config.info
    assert info.val_split == "earliest"
    assert registry_client(store).get_run(outcome.run_id).data.params["val_split"] == "earliest"
    _, val, _ = split_samples(fixture_data, info.val_fraction, info.seed, None, info.val_split)
    _, random_val, _ = split_samples(fixture_data, info.val_fraction, info.seed, None)
    assert {s.path for s in val} != {s.path for s in random_val}
    card = Path(registry_client(store).download_artifacts(outcome.run_id, "model_card.md", str(tmp_path)))
    assert (
        "| validation | 6 | the earliest 0.2 of each class's train images, whole patients in acquisition"
        in (card.read_text())
    )
    predictions = predict_images(
        classifier, decode_all(val, Preprocessing(classifier.input_size), quiet=True)
    )
    expected = choose_operating_points(predictions.labels, predictions.probs, prior=info.prior)
    assert {k: v.threshold for k, v in expected.items()} == pytest.approx(
        {k: v.threshold for k, v in classifier.config.operating_points.items()}, abs=1e-6
    )


def test_platt_calibration_is_fitted_on_validation_and_travels(fixture_data: Path, tmp_path: Path) -> None:
    store = store_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = TrainConfig.build(**tiny_train_args(fixture_data, calibration="platt", bootstrap=0))
    outcome = train(config, store, quiet=True)
    _, classifier = store.load(f"models:/pneumonia-classifier/{outcome.version}", destination=tmp_path / "v")
    info = classifier.config.info
    _, val, _ = split_samples(fixture_data, info.val_fraction, info.seed, None)
    images = decode_all(val, Preprocessing(classifier.input_size), quiet=True)
    member = classifier.members[0]
    logits, _ = member.runner(member.preprocessing.batch([images.decoded(i) for i in range(len(val))]))
    temperature, bias = fit_platt(logits, images.labels.numpy())
    assert classifier.config.temperature == pytest.approx(temperature, rel=1e-3)
    assert classifier.config.logit_bias == pytest.approx(bias, rel=1e-3, abs=1e-3) and bias != 0
    run = registry_client(store).get_run(outcome.run_id)
    assert run.data.params["calibration"] == "platt"
    assert run.data.metrics["logit_bias"] == pytest.approx(classifier.config.logit_bias)
    card = registry_client(store).download_artifacts(outcome.run_id, "model_card.md", str(tmp_path))
    t, b = classifier.config.temperature, classifier.config.logit_bias
    assert f"Platt scaling fitted on validation (T = {t:.3f}, bias {b:.3f}" in Path(card).read_text()


def test_early_stopping_restores_the_best_epoch() -> None:
    """Train labels are the opposite of validation's, so validation AUC only falls after the first epoch:
    patience 2 stops after three epochs, and the weights are those of the first."""
    torch.manual_seed(0)
    features = torch.randn(128, 8)
    rule = (features[:, 0] > 0).long()
    train_loader = DataLoader(TensorDataset(features, 1 - rule), batch_size=16, shuffle=False)
    val_loader = DataLoader(TensorDataset(features, rule), batch_size=64)
    model = nn.Sequential(nn.Linear(8, 2))
    with torch.no_grad():  # start by agreeing with validation, so epoch 1 is the best
        model[0].weight.zero_()
        model[0].weight[1, 0], model[0].weight[0, 0] = 1.0, -1.0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    states = []
    result = fit_on_cpu(
        model,
        train_loader,
        optimizer,
        10,
        val_loader=val_loader,
        patience=2,
        on_epoch=lambda epoch, values: states.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    aucs = [row["val_auc"] for row in result.history]
    assert len(result.history) == 3 and result.best_epoch == 0 and aucs[0] > aucs[1] >= aucs[2]
    restored = model.state_dict()
    assert all(torch.equal(restored[k], states[0][k]) for k in restored)
    assert not all(torch.equal(restored[k], states[-1][k]) for k in restored)


def test_pretrained_fine_tunes_from_the_weights_torchvision_delivers(
    fixture_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--pretrained end to end, with a locally made state dict served through torchvision's weights API."""
    torch.manual_seed(123)
    given = torchvision.models.alexnet(weights=None).state_dict()
    calls = []

    def deliver(url, *args, **kwargs):
        calls.append(url)
        return {k: v.clone() for k, v in given.items()}

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", deliver)
    store = store_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = TrainConfig.build(
        **tiny_train_args(
            fixture_data, arch="alexnet", pretrained=True, image_size=64, lr=1e-9, augment=False, bootstrap=0
        )
    )
    outcome = train(config, store, quiet=True)
    assert len(calls) == 1 and calls[0].endswith(".pth")
    run = registry_client(store).get_run(outcome.run_id)
    assert run.data.tags["pretrained"] == "True" and run.data.params["pretrained"] == "True"
    _, classifier = store.load(
        f"models:/pneumonia-classifier/{outcome.version}", "torch", destination=tmp_path / "v"
    )
    trained = classifier.members[0].network.body.features[0].weight.detach()
    # lr 1e-9 for one epoch: the backbone is still the delivered one (the head is new: 2 classes).
    assert np.allclose(trained.numpy(), given["features.0.weight"].numpy(), atol=1e-6)


def test_ema_changes_what_is_kept_and_mixup_what_is_trained(fixture_data: Path, tmp_path: Path) -> None:
    """The same seeded run three times: --ema-decay leaves the training itself as it was (same training
    loss) and changes what is validated and shipped; --mixup-alpha changes the training."""
    runs = {}
    for name, extra in {"plain": {}, "ema": {"ema_decay": 0.9}, "mixup": {"mixup_alpha": 0.4}}.items():
        store = store_for(f"sqlite:///{tmp_path / name / 'mlflow.db'}")
        config = TrainConfig.build(**tiny_train_args(fixture_data, bootstrap=0, threads=1, **extra))
        outcome = train(config, store, quiet=True)
        run = registry_client(store).get_run(outcome.run_id)
        runs[name] = (run.data.metrics, run.data.params)
    (plain, _), (ema, ema_params), (mixup, mixup_params) = runs["plain"], runs["ema"], runs["mixup"]
    assert ema_params["ema_decay"] == "0.9" and mixup_params["mixup_alpha"] == "0.4"
    assert ema["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-6)
    assert ema["val_loss"] != pytest.approx(plain["val_loss"], rel=1e-4)
    assert ema["temperature"] != pytest.approx(plain["temperature"], rel=1e-4)
    assert mixup["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-4)


def test_progressive_resizing_reaches_the_served_size(fixture_data: Path, tmp_path: Path) -> None:
    """A run with --progressive-start-size trains its epochs at growing sizes (logged per epoch) and
    ships a package at --image-size."""
    store = store_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = TrainConfig.build(
        **tiny_train_args(
            fixture_data, epochs=3, bootstrap=0, threads=1, image_size=48, progressive_start_size=32
        )
    )
    outcome = train(config, store, quiet=True)
    client = registry_client(store)
    sizes = [metric.value for metric in client.get_metric_history(outcome.run_id, "input_size")]
    assert sizes == [32, 40, 48]
    assert client.get_run(outcome.run_id).data.params["progressive_start_size"] == "32"
    _, classifier = store.load(f"models:/pneumonia-classifier/{outcome.version}", destination=tmp_path / "v")
    assert classifier.config.preprocessing is not None and classifier.config.preprocessing.image_size == 48
