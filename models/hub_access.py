"""Talking to the Hugging Face hub: its address (HF_ENDPOINT read at each call), its errors in
the words Hearth shows (no such model, gated, offline), and one HTTP session per download."""

from __future__ import annotations

import contextlib
import os

from workers.errors import BadInput, MissingModel

OFFLINE = "can't reach the hub: offline? everything on disk still works"


class HubUnreachable(MissingModel):
    """No answer from the hub (offline, HF_HUB_OFFLINE set, a proxy in the way)."""


@contextlib.contextmanager
def hub_session():
    """huggingface_hub keeps one HTTP client with pooled connections for the process; a window
    open all day must not keep a connection to the hub once its download is over."""
    try:
        yield
    finally:
        from huggingface_hub.utils import close_session

        close_session()


def endpoint() -> str:
    """HF_ENDPOINT read now (huggingface_hub fixes its own constant when first imported)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def checked_repo_id(repo_id: str) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = (repo_id or "").strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise BadInput(f"{repo_id!r} is not a hub id (like org/name)", field="hub_id") from None
    if "/" not in repo_id:
        raise BadInput(f"{repo_id!r} is not a hub id: name its owner too (org/name)", field="hub_id")
    return repo_id


def hub_call(call, what: str):
    """Run one hub request, turning the library's errors into the ones Hearth shows."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise HubUnreachable(f"{OFFLINE} (HF_HUB_OFFLINE is set)")
    try:
        return call(HfApi(endpoint=endpoint()))
    except GatedRepoError:
        raise MissingModel(
            f"{what} is gated on the hub: accept its licence on huggingface.co and log in (hf auth login)"
        ) from None
    except RepositoryNotFoundError:
        raise MissingModel(f"no model {what!r} on the hub (or it is private)") from None
    except RevisionNotFoundError:
        raise MissingModel(f"{what}: no such revision on the hub") from None
    except OfflineModeIsEnabled:
        raise HubUnreachable(f"{OFFLINE} (offline mode is on)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise HubUnreachable(f"the hub answered {status} for {what}; try again later") from None
    except transport_errors() as exc:
        raise HubUnreachable(f"{OFFLINE} ({type(exc).__name__})") from None


def transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors (huggingface_hub's client package has been renamed)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)
