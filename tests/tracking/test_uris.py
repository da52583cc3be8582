"""models:/ URIs, written in one module."""

from pneumonia_zoo.tracking.uris import champion_uri, is_registry_uri, version_uri


def test_uris_name_an_alias_or_a_version() -> None:
    assert champion_uri("pneumonia-classifier", "champion") == "models:/pneumonia-classifier@champion"
    assert version_uri("pneumonia-classifier", 3) == "models:/pneumonia-classifier/3"


def test_a_registry_uri_is_told_from_a_package_folder() -> None:
    assert is_registry_uri("models:/pneumonia-classifier/3")
    assert not is_registry_uri("pneumonia_zoo/assets/starter")
    assert not is_registry_uri("models/starter")  # a folder named models/
