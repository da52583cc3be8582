"""`models:/` URIs of registered versions: the one module that writes them, and the help texts that
show their forms. Pure strings: no MLflow."""

SCHEME = "models:/"
ALIAS_FORM = f"{SCHEME}NAME@ALIAS"
VERSION_FORM = f"{SCHEME}NAME/VERSION"


def champion_uri(name: str, alias: str) -> str:
    """The version an alias (the champion's, or any other) points at: models:/NAME@ALIAS."""
    return f"{SCHEME}{name}@{alias}"


def version_uri(name: str, version: str | int) -> str:
    """One registered version: models:/NAME/VERSION."""
    return f"{SCHEME}{name}/{version}"


def is_registry_uri(text: str) -> bool:
    """A `models:/` URI (a registered version), as opposed to a package folder's path."""
    return text.startswith(SCHEME)
