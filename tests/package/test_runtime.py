"""The ONNX runner: every session allocates from the process's one shared CPU arena (an ensemble's
members held an arena each), with the same outputs as a session on its own arena, before and after the
arena gives its memory back."""

from pathlib import Path

import numpy as np
import onnxruntime

from pneumonia_zoo.package.format import ONNX_FILE
from pneumonia_zoo.package.runtime import OnnxRunner
from tests.package.helpers import make_package


def test_runners_share_one_arena_and_answer_as_a_private_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    make_package(first)
    make_package(second, seed=1)
    runners = [OnnxRunner(directory / ONNX_FILE, threads=1) for directory in (first, second)]
    for runner in runners:
        assert (
            runner.session.get_session_options().get_session_config_entry("session.use_env_allocators") == "1"
        )
    batch = np.random.default_rng(0).random((4, *runners[0]._smallest.shape[1:]), dtype=np.float32)
    for runner, directory in zip(runners, (first, second), strict=True):
        private = onnxruntime.InferenceSession(str(directory / ONNX_FILE), providers=["CPUExecutionProvider"])
        expected = private.run(runner.outputs, {runner.input_name: batch})
        logits, features = runner(batch)
        np.testing.assert_allclose(logits, expected[0], atol=1e-6)
        np.testing.assert_allclose(features, expected[1], atol=1e-6)
        runner.release_memory()
        np.testing.assert_allclose(runner(batch)[0], expected[0], atol=1e-6)
    assert not np.allclose(runners[0](batch)[0], runners[1](batch)[0])  # two networks, not one
