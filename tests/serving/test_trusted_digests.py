"""Issue 22: PNEUMONIA_ZOO_TRUSTED_DIGESTS pins the packages the service may run. Whoever can write to the
registry (register a version, move the champion alias) cannot get another package served."""

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import PackageRejected
from pneumonia_zoo.package.format import CONFIG_FILE
from pneumonia_zoo.package.io import package_digest
from pneumonia_zoo.resources import STARTER_DIR
from pneumonia_zoo.serving.holder import INVALID_ARTIFACT, READY, ModelHolder
from pneumonia_zoo.tracking.publish import register_package
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.workflows.starter import ensure_champion
from tests.serving.conftest import make_client

UNKNOWN = "0" * 64


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(store URI, digest of version 1: the starter, digest of version 2: a registry writer's package)."""
    root = tmp_path_factory.mktemp("trusted")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store = Store(Settings(tracking_uri=uri, reload_interval_s=0))
    assert ensure_champion(store, STARTER_DIR) == "1"
    other = root / "other"
    shutil.copytree(STARTER_DIR, other)
    values = json.loads((other / CONFIG_FILE).read_text())
    values["metrics"]["val_auc"] = 0.99  # the same files, another model.json: another package
    (other / CONFIG_FILE).write_text(json.dumps(values))
    assert register_package(store, other, "someone-else") == "2"
    digests = [package_digest(store.download_package(v, root / f"v{v}")) for v in ("1", "2")]
    assert digests[0] != digests[1]
    return uri, digests[0], digests[1]


def holder_for(uri: str, trusted: list[str]) -> ModelHolder:
    settings = Settings(tracking_uri=uri, reload_interval_s=0, trusted_digests=trusted)
    return ModelHolder(settings, Store(settings))


def test_an_untrusted_champion_is_refused_with_a_reason(registry) -> None:
    uri, first, _ = registry
    Store(Settings(tracking_uri=uri)).set_alias("1")
    holder = holder_for(uri, [UNKNOWN])
    assert not holder.refresh()
    assert holder.current is None and holder.status == INVALID_ARTIFACT
    assert "PNEUMONIA_ZOO_TRUSTED_DIGESTS" in holder.reason and first in holder.reason
    with pytest.raises(PackageRejected, match="TRUSTED_DIGESTS"):
        holder.get_version("1")


def test_a_trusted_champion_serves_and_an_untrusted_one_does_not_replace_it(registry) -> None:
    uri, first, second = registry
    store = Store(Settings(tracking_uri=uri))
    store.set_alias("1")
    holder = holder_for(uri, [first])
    assert holder.refresh() and holder.status == READY and holder.current.version == "1"
    store.set_alias("2")  # a registry writer moves the champion to their package
    try:
        assert not holder.refresh()
        assert holder.current.version == "1", "the trusted version keeps serving"
        assert "TRUSTED_DIGESTS" in (holder.last_error or "")
        with pytest.raises(PackageRejected):
            holder.get_version("02")  # by number too
    finally:
        store.set_alias("1")
    # Both listed: both serve.
    both = holder_for(uri, [first, second])
    assert both.get_version("2").version == "2"


def test_without_the_setting_any_verified_package_serves(registry) -> None:
    uri, _, _ = registry
    holder = holder_for(uri, [])
    assert holder.refresh() and holder.get_version("2").version == "2"


def test_the_service_stays_up_and_says_why_it_is_not_ready(registry) -> None:
    uri, first, _ = registry
    for client in make_client(uri, trusted_digests=[UNKNOWN]):
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == INVALID_ARTIFACT
        assert "PNEUMONIA_ZOO_TRUSTED_DIGESTS" in ready.json()["detail"]
        assert client.get("/healthz").status_code == 200
    for client in make_client(uri, trusted_digests=[first.upper()]):  # hex digits in either case
        assert client.get("/readyz").status_code == 200


def test_the_setting_reads_a_comma_separated_list_and_refuses_non_digests(monkeypatch) -> None:
    digest = "ab" * 32
    monkeypatch.setenv("PNEUMONIA_ZOO_TRUSTED_DIGESTS", f" sha256:{digest.upper()}, {'cd' * 32},")
    assert Settings().trusted_digests == [digest, "cd" * 32]
    monkeypatch.setenv("PNEUMONIA_ZOO_TRUSTED_DIGESTS", "")
    assert Settings().trusted_digests == []
    for bad in ("abc", "zz" * 32, f"{digest},oops"):
        monkeypatch.setenv("PNEUMONIA_ZOO_TRUSTED_DIGESTS", bad)
        with pytest.raises(ValidationError):
            Settings()


def test_digests_are_logged_on_load(registry, caplog) -> None:
    """How an operator learns the digest to pin: the load's log line."""
    uri, first, _ = registry
    with caplog.at_level("INFO", logger="pneumonia_zoo.serving.holder"):
        holder_for(uri, []).get_version("1")
    assert f"model.json sha256 {first}" in caplog.text
    assert Path(STARTER_DIR / CONFIG_FILE).is_file()
