"""`models:/` URIs: the one module that writes or reads them.

`models:/NAME@ALIAS` and `models:/NAME/VERSION` name registry versions; `models:/m-<id>` names a logged
model (MLflow 3). Versions are normalised once here: ASCII digits only, no leading zeros.
"""

import re
from dataclasses import dataclass

from pneumonia_zoo.errors import InvalidInput, NotFound

SCHEME = "models:/"
ALIAS_FORM = f"{SCHEME}NAME@ALIAS"
VERSION_FORM = f"{SCHEME}NAME/VERSION"
REGISTRY_URI_FORMS = f"{ALIAS_FORM} or {VERSION_FORM}"
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[0-9]+))$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<id>m-[0-9a-f]+)$")
_VERSION = re.compile(r"^[0-9]+$")  # ASCII digits only: str.isdigit() also accepts "١" or "²"
_MAX_DIGITS = 18  # MLflow's version numbers are 64-bit integers


@dataclass(frozen=True)
class RegistryUri:
    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return alias_uri(self.name, self.alias) if self.alias else version_uri(self.name, self.version or "")


def is_registry_uri(text: str) -> bool:
    return text.startswith(SCHEME)


def normalize_version(text: str) -> str:
    """'0001' -> '1'; InvalidInput for anything but ASCII digits (a registry version number), NotFound
    for a number longer than any registry's."""
    if not _VERSION.fullmatch(text):
        raise InvalidInput(f"version must be a registry version number, not '{text[:40]}'")
    digits = text.lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:  # no registry holds it (and int() refuses 4300 digits with a ValueError)
        raise NotFound(f"there is no version {digits[:20]}... in the registry")
    return digits


def version_uri(name: str, version: str | int) -> str:
    return f"{SCHEME}{name}/{normalize_version(str(version))}"


def alias_uri(name: str, alias: str) -> str:
    """The version an alias (the champion's, or any other) points at."""
    return f"{SCHEME}{name}@{alias}"


def logged_model_uri(model_id: str) -> str:
    return f"{SCHEME}{model_id}"


def parse(uri: str) -> RegistryUri:
    match = _REGISTRY_URI.fullmatch(uri)
    if not match:
        raise InvalidInput(f"'{uri[:80]}' is not a {REGISTRY_URI_FORMS} URI")
    version = match["version"]
    return RegistryUri(match["name"], match["alias"], normalize_version(version) if version else None)


def logged_model_id(source: str | None) -> str | None:
    """The logged model behind a version's source (`models:/m-<id>`), None for other sources."""
    match = _LOGGED_MODEL_URI.fullmatch(source or "")
    return match["id"] if match else None
