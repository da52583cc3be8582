"""Two CPU processes on the gloo backend: DDP trains (weight averaging included: every rank averages from
rank 0's best epoch), only rank 0 logs and registers."""

import os
import sys
from pathlib import Path

from tests.conftest import registry_client, store_for
from tests.servers import run_group


def test_torchrun_two_processes_gloo(tracking_store: str, fixture_data: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "pneumonia_zoo",
        "train",
        "--arch",
        "small_cnn",
        "--data",
        str(fixture_data),
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--swa-epochs",
        "1",
        "--bootstrap",
        "20",
        "--no-onnx",
        "--threads",
        "1",
        "-q",
    ]
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_store, "OMP_NUM_THREADS": "1"}
    result = run_group(command, timeout=600, env=env)  # the ranks die with the launcher, whatever happens
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    store = store_for(tracking_store)
    runs = registry_client(store).search_runs(
        [registry_client(store).get_experiment_by_name("pneumonia-zoo").experiment_id]
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 1 logged nothing
    metrics = runs[0].data.metrics
    assert metrics["epochs_run"] == 3 and metrics["swa_epochs_run"] == 1  # two of the schedule, one averaging
    assert metrics["val_loss"] == metrics["swa_val_loss"]
    assert [str(v.version) for v in store.versions()] == ["1"]
    assert result.stdout.count("registered version 1") == 1
