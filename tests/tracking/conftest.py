"""The tracking tests' own store. The session's `registered_store` is shared with the serving tests,
so tests here only read it; anything that logs or registers goes to `scratch_store` or a store of its own.
"""

import pytest

from tests.conftest import FIXTURE_DATA, store_for, tiny_train_args

# Both scratch versions share the split seed (an ensemble of them is valid) and differ in their lr; neither
# is trained like registered_store's version 1, so reading one store for the other cannot go unnoticed.
SCRATCH_SEED = 42
SCRATCH_LRS = (2e-3, 3e-3)


@pytest.fixture(scope="session")
def scratch_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Versions 1 and 2: small_cnn with ONNX, trained on the fixture images on one split."""
    from pneumonia_zoo.tracking.recipe import train
    from pneumonia_zoo.training.config import TrainConfig

    uri = f"sqlite:///{tmp_path_factory.mktemp('scratch-store') / 'mlflow.db'}"
    store = store_for(uri)
    for lr in SCRATCH_LRS:
        config = TrainConfig.build(**tiny_train_args(FIXTURE_DATA, onnx=True, seed=SCRATCH_SEED, lr=lr))
        train(config, store, quiet=True)
    return uri
