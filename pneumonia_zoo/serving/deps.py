"""FastAPI dependencies: everything a route needs comes from the app's state, set by create_app."""

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from pneumonia_zoo.config import Settings
from pneumonia_zoo.serving.errors import ServingError
from pneumonia_zoo.serving.holder import ModelHolder
from pneumonia_zoo.serving.inference import InferenceService
from pneumonia_zoo.serving.uploads import IncomingBody
from pneumonia_zoo.tracking.store import Store


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> InferenceService:
    return request.app.state.service


def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


def get_templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_body(request: Request) -> IncomingBody:
    """The request's body, not read yet: what the service needs of it (its headers and stream)."""
    return IncomingBody.from_headers(request.headers, request.stream())


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
StoreDep = Annotated[Store, Depends(get_store)]
BodyDep = Annotated[IncomingBody, Depends(get_body)]

_bearer = HTTPBearer(auto_error=False, description="PNEUMONIA_ZOO_ADMIN_TOKEN")


def require_admin(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise ServingError(403, "admin endpoints are disabled: set PNEUMONIA_ZOO_ADMIN_TOKEN to enable them")
    expected = settings.admin_token.get_secret_value().encode()
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise ServingError(
            401, "a valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
