"""Two CPU processes on the gloo backend: DDP trains, only rank 0 logs and registers."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow

from pneumonia_zoo.tracking.registry import list_versions


def test_torchrun_two_processes_gloo(tracking_store: str, fixture_data: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "pneumonia_zoo", "train", "--arch", "small_cnn", "--data", str(fixture_data),
        "--epochs", "2", "--image-size", "32", "--batch-size", "4", "--bootstrap", "20", "--no-onnx",
        "--threads", "1", "-q",
    ]  # fmt: skip
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_store, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = mlflow.search_runs(experiment_names=["pneumonia-zoo"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 1 logged nothing
    assert runs[0].data.metrics["epochs_run"] == 2
    assert [v.version for v in list_versions()] in ([1], ["1"])
    assert result.stdout.count("registered version 1") == 1
