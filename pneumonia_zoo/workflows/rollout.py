"""A shadow rollout through registry aliases: a version becomes @challenger (the service scores a share
of its answers with it, recorded as kind shadow), then @champion, or goes back to nothing.

Only aliases move: the service follows them (within PNEUMONIA_ZOO_RELOAD_INTERVAL_S), nothing restarts.
"""

from dataclasses import dataclass

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking import uris
from pneumonia_zoo.tracking.store import Store


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version: str | None  # None: the alias was removed
    previous: str | None

    def message(self, model_name: str) -> str:
        before = f" (was version {self.previous})" if self.previous else ""
        if self.version is None:
            return f"{model_name}@{self.alias} removed{before}"
        return f"{model_name} version {self.version} is now @{self.alias}{before}"


def _holder(store: Store, alias: str) -> str | None:
    try:
        return store.resolve(uris.alias_uri(store.model_name, alias)).version
    except UserError:
        return None


def start_shadow(store: Store, version: str, alias: str) -> AliasMove:
    """Make `version` the challenger; refused when it is the champion already."""
    version = uris.normalize_version(version)
    store.resolve(store.version_uri(version))  # NotFound: not in the registry
    if _holder(store, store.champion_alias) == version:
        raise UserError(f"version {version} is the champion: a challenger must be another version")
    previous = _holder(store, alias)
    store.set_alias(version, alias)
    return AliasMove(alias, version, previous)


def stop_shadow(store: Store, alias: str) -> AliasMove:
    previous = _holder(store, alias)
    store.remove_alias(alias)
    return AliasMove(alias, None, previous)


def promote_challenger(store: Store, alias: str) -> AliasMove:
    """The challenger becomes the champion; the challenger alias is removed."""
    challenger = _holder(store, alias)
    if challenger is None:
        raise UserError(f"no version is @{alias}: start a shadow first (pneumonia-zoo shadow start VERSION)")
    previous = _holder(store, store.champion_alias)
    store.set_alias(challenger)
    store.remove_alias(alias)
    return AliasMove(store.champion_alias, challenger, previous)
