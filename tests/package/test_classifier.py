"""The classifier's guard: colour photographs and odd shapes are flagged, X-rays of either kind are not,
and a flag never hides the prediction."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumonia_zoo.data.images import DecodedImage, decode_image, read_image
from pneumonia_zoo.package.classifier import REASON_ASPECT, REASON_COLOUR, load_classifier
from pneumonia_zoo.package.prediction import OOD_WARNING, ModelInfo, prediction_record
from tests.package.helpers import make_package


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    directory = tmp_path_factory.mktemp("guarded") / "package"
    make_package(directory)
    return load_classifier(directory)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_natural_photographs_are_flagged_as_colour_images(classifier) -> None:
    from sklearn.datasets import load_sample_images

    photos = [
        decode_image(jpeg(Image.fromarray(array)), min_side=48) for array in load_sample_images().images
    ]
    scores = classifier.predict(photos)
    assert scores.ood_flags.all()
    assert all(REASON_COLOUR in reasons for reasons in scores.ood_reasons)
    assert np.isfinite(scores.probabilities).all()  # the prediction is still made


def test_a_panorama_is_flagged_for_its_shape(classifier, originals: Path) -> None:
    xray = Image.open(originals / "person56_virus_112.jpeg").convert("L")
    panorama = decode_image(jpeg(xray.resize((1200, 300))), min_side=48)
    scores = classifier.predict([panorama])
    assert scores.ood_flags[0] and REASON_ASPECT in scores.ood_reasons[0]


def test_grey_xrays_are_not_flagged_by_the_cheap_checks(
    classifier, originals: Path, fixture_data: Path
) -> None:
    paths = sorted(originals.iterdir()) + sorted(fixture_data.rglob("*.jpeg"))
    scores = classifier.predict([read_image(path, min_side=48) for path in paths])
    assert not any(REASON_COLOUR in r or REASON_ASPECT in r for r in scores.ood_reasons)


def test_the_record_keeps_the_prediction_and_warns(classifier) -> None:
    from sklearn.datasets import load_sample_image

    photo = decode_image(jpeg(Image.fromarray(load_sample_image("flower.jpg"))), min_side=48)
    scores = classifier.predict([photo])
    record = prediction_record(classifier.config, scores, 0, ModelInfo("m", "1", "small_cnn", "onnx"))
    assert record["out_of_population"]["flagged"] and record["out_of_population"]["warning"] == OOD_WARNING
    assert record["label"] in ("NORMAL", "PNEUMONIA") and record["operating_point"]["name"] == "balanced"
    p = record["probabilities"]["PNEUMONIA"]
    assert record["uncertain"] == (abs(p - record["threshold"]) < 0.1)
    other = prediction_record(
        classifier.config, scores, 0, ModelInfo("m", "1", "x", "onnx"), "sensitivity_95"
    )
    assert other["threshold"] == 0.2 and other["operating_point"]["name"] == "sensitivity_95"


def test_test_time_views_average_probabilities(tmp_path: Path, originals: Path) -> None:
    import json

    from pneumonia_zoo.package.format import CONFIG_FILE
    from pneumonia_zoo.package.io import read_config, record_files

    make_package(tmp_path / "p")
    make_package(tmp_path / "p2")  # the same network (same seed), without test-time views
    image = read_image(originals / "person56_virus_112.jpeg", min_side=48)
    plain = load_classifier(tmp_path / "p").predict([image]).probabilities
    config = read_config(tmp_path / "p")
    config.tta = ["identity", "zoom_in"]
    record_files(tmp_path / "p", config)
    assert json.loads((tmp_path / "p" / CONFIG_FILE).read_text())["tta"] == ["identity", "zoom_in"]
    averaged = load_classifier(tmp_path / "p").predict([image]).probabilities
    width, height = image.image.size
    dx, dy = round(width * 0.04), round(height * 0.04)
    zoomed_image = DecodedImage(image.image.crop((dx, dy, width - dx, height - dy)), image.size, 0.0, "JPEG")
    zoomed = load_classifier(tmp_path / "p2").predict([zoomed_image]).probabilities
    assert (plain != zoomed).any()
    assert np.abs(averaged - (plain + zoomed) / 2).max() < 1e-6


def test_the_linear_cam_is_grad_cam_without_torch(tmp_path: Path, originals: Path) -> None:
    """small_cnn's CAM layer feeds only average pooling and the head: the map from the ONNX activations
    and the head weights is grad-cam's, to float precision."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from pneumonia_zoo.zoo.features import LogitsOnly

    make_package(tmp_path / "p", size=64)
    member = load_classifier(tmp_path / "p", runtime="onnx").members[0]
    assert member.linear_cam
    image = read_image(originals / "person56_virus_112.jpeg", min_side=64)
    informative = 0
    for class_index in (0, 1):
        ours = member.class_activation_map(image, class_index)
        network = LogitsOnly(member.network)
        layer = network.get_submodule("network.body.features.3")
        inputs = torch.from_numpy(member.preprocessing.batch([image]))
        with GradCAM(model=network, target_layers=[layer]) as cam:
            theirs = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(class_index)])[0]
        # grad-cam scales its map to 0..1, resizes it to the input with OpenCV and scales it again.
        import cv2

        resized = cv2.resize(ours.astype(np.float32), theirs.shape[::-1])
        spread = resized.max() - resized.min()
        resized = (resized - resized.min()) / spread if spread > 0 else resized
        assert np.allclose(resized, theirs, atol=1e-3)
        informative += int(spread > 0)
    assert informative  # at least one class's map is not flat, so the comparison means something


def test_preprocessing_stores_images_as_the_training_copies_were(originals: Path) -> None:
    from pneumonia_zoo.data.transforms import Preprocessing

    image = read_image(originals / "IM-0061-0001.jpeg", min_side=224)
    clean = Preprocessing(224).pixels(image)
    stored = Preprocessing(224, jpeg_quality=75).pixels(image)
    buffer = io.BytesIO()
    Image.fromarray(clean).save(buffer, format="JPEG", quality=75)
    assert np.array_equal(stored, np.asarray(Image.open(buffer)))  # exactly a JPEG q75 round trip
    assert not np.array_equal(stored, clean)


def test_pixels_already_stored_that_way_are_not_stored_twice(originals: Path) -> None:
    """A training cache holds re-encoded pixels: evaluating from it must not re-encode them again."""
    from pneumonia_zoo.data.transforms import Preprocessing

    preprocessing = Preprocessing(224, jpeg_quality=75)
    stored = preprocessing.pixels(read_image(originals / "IM-0061-0001.jpeg", min_side=224))
    cached = DecodedImage(Image.fromarray(stored), (224, 224), 0.0, "cache", stored_quality=75)
    assert np.array_equal(preprocessing.pixels(cached), stored)
    uploaded = DecodedImage(Image.fromarray(stored), (224, 224), 0.0, "JPEG")  # the same pixels, uploaded
    assert not np.array_equal(preprocessing.pixels(uploaded), stored)
