"""The starter served by LitServe with its batching on, through the same code as ours.

    python benchmarks/peers/litserve_server.py --port P [--workers 1] [--max-batch-size 16]
        [--batch-timeout 0.005]

"The same decode code": `decode_image` with `min_side` (DCT-scaled JPEG decode, one grey channel) and
the classifier's own hooks (`preprocess`, `forward`, `postprocess`), answered with our JSON record.
What differs is only the serving around them: LitServe decodes each batch's requests in its
inference worker process, one after the other, then runs the batch. With `--workers N` it runs N such
processes, each network then on cores / N threads so that they do not fight over the cores.
Answers POST /predict (multipart field `file`); GET /health is readiness.
"""

import argparse

import litserve as ls
import numpy as np
from fastapi import Request

from pneumonia_zoo.data.images import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from pneumonia_zoo.package.classifier import Classifier, Scores, load_classifier
from pneumonia_zoo.package.prediction import ModelInfo, prediction_record
from pneumonia_zoo.resources import STARTER_DIR, available_cpus

Decoded = tuple[DecodedImage, list[np.ndarray]]


class ClassifierAPI(ls.LitAPI):
    def __init__(self, threads: int | None, **options: object) -> None:
        super().__init__(**options)
        self.threads = threads

    def setup(self, device: str) -> None:
        self.classifier: Classifier = load_classifier(STARTER_DIR, "auto", self.threads)
        self.classifier.warm_up()
        config = self.classifier.config
        self.info = ModelInfo("starter", "litserve", config.architecture, self.classifier.runtime)

    def decode_request(self, request: Request) -> Decoded:
        # Annotated `Request`, LitServe hands over the parsed form (not a JSON body)
        image = decode_image(request["file"].file.read(), DEFAULT_MAX_PIXELS, self.classifier.input_size)
        return image, self.classifier.preprocess([image])

    def batch(self, items: list[Decoded]) -> tuple[list[DecodedImage], list[np.ndarray]]:
        images = [image for image, _ in items]
        inputs = [np.concatenate([x[k] for _, x in items]) for k in range(len(items[0][1]))]
        return images, inputs

    def predict(self, batch: tuple[list[DecodedImage], list[np.ndarray]]) -> Scores:
        images, inputs = batch
        return self.classifier.postprocess(self.classifier.forward(inputs), images)

    def unbatch(self, scores: Scores) -> list[tuple[Scores, int]]:
        return [(scores, row) for row in range(len(scores.probabilities))]

    def encode_response(self, output: tuple[Scores, int]) -> dict:
        scores, row = output
        return prediction_record(self.classifier.config, scores, row, self.info)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    args = parser.parse_args()
    # One worker: the network on every core, as ours. Several: the cores shared out between them.
    threads = None if args.workers == 1 else max(1, available_cpus() // args.workers)
    api = ClassifierAPI(threads, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers, timeout=120)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
