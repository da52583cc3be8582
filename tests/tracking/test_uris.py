"""Registry URIs: written and read in one module, versions normalised once."""

import pytest

from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.tracking import uris


@pytest.mark.parametrize(("text", "number"), [("1", "1"), ("0001", "1"), ("01", "1"), ("120", "120")])
def test_versions_are_normalised_to_one_spelling(text: str, number: str) -> None:
    assert uris.normalize_version(text) == number
    assert uris.parse(f"models:/m/{text}") == uris.RegistryUri("m", version=number)


@pytest.mark.parametrize("text", ["", "1.0", "-1", " 1", "١", "²", "1e3", "x", "1\n"])
def test_anything_but_ascii_digits_is_not_a_version(text: str) -> None:
    with pytest.raises(InvalidInput, match="registry version number"):
        uris.normalize_version(text)


def test_round_trips() -> None:
    assert uris.version_uri("pneumonia-classifier", "007") == "models:/pneumonia-classifier/7"
    assert uris.alias_uri("pneumonia-classifier", "champion") == "models:/pneumonia-classifier@champion"
    assert str(uris.parse("models:/pneumonia-classifier@champion")) == "models:/pneumonia-classifier@champion"
    assert str(uris.parse("models:/pneumonia-classifier/0003")) == "models:/pneumonia-classifier/3"
    assert uris.logged_model_id(uris.logged_model_uri("m-0123abcd")) == "m-0123abcd"
    assert uris.logged_model_id("file:///tmp/artifacts") is None


@pytest.mark.parametrize("text", ["models:/", "models:/a/b/c", "runs:/abc/model", "models:/a@", "models:/a/"])
def test_malformed_uris_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not a models:/NAME@ALIAS or models:/NAME/VERSION URI"):
        uris.parse(text)


def test_a_registry_uri_is_told_from_a_package_folder() -> None:
    assert uris.is_registry_uri("models:/pneumonia-classifier/3")
    assert not uris.is_registry_uri("pneumonia_zoo/assets/starter")
    assert not uris.is_registry_uri("models/starter")  # a folder named models/
