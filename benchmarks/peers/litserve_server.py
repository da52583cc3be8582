"""The starter's ONNX network served by LitServe with its batching on, the same preprocessing as ours.

python benchmarks/peers/litserve_server.py --port P [--max-batch-size 16] [--batch-timeout 0.005]
Answers POST /predict (multipart field `file`) with roughly our JSON; GET /health is readiness.
"""

import argparse
from pathlib import Path

import litserve as ls
import numpy as np
import onnxruntime
from fastapi import Request
from pneumonia_zoo.tracking.package import load_package

from pneumonia_zoo.data.images import decode_image

STARTER = Path(__file__).resolve().parents[2] / "models" / "starter"


class OnnxAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.package = load_package(STARTER)
        self.session = onnxruntime.InferenceSession(
            str(self.package.onnx_path), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def decode_request(self, request: Request) -> np.ndarray:
        # Annotated `Request`, LitServe hands over the parsed form (not a JSON body)
        upload = request["file"]
        image = decode_image(upload.file.read())
        return self.package.config.preprocessing(image).numpy()

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: batch})[0]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, row: np.ndarray) -> dict:
        names, threshold = self.package.config.class_names, self.package.config.threshold
        label = names[1] if row[1] >= threshold else names[0]
        return {
            "label": label,
            "probabilities": dict(zip(names, map(float, row), strict=True)),
            "threshold": threshold,
            "model": {"name": "starter", "version": "starter", "runtime": "onnx"},
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    args = parser.parse_args()
    api = OnnxAPI(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
