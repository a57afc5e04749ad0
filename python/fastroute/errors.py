"""Every error fastroute raises derives from :class:`FastrouteError`.

Where the caller did something wrong, the class also derives from the builtin
exception a Python user would expect (``ValueError``, ``TypeError``,
``LookupError``...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "FastrouteError",
    "InvalidInput",
    "UnsupportedInput",
    "CorruptFile",
    "NoRoute",
    "RegistrationError",
    "PolicyError",
    "ConfigError",
    "ModelError",
    "DeadlineExceeded",
    "Overloaded",
    "RouterClosed",
]


class FastrouteError(Exception):
    """Base class of every fastroute error."""


class InvalidInput(FastrouteError, ValueError):
    """An input value cannot be analysed or routed (empty, NaN, wrong shape...)."""


class UnsupportedInput(FastrouteError, TypeError):
    """An input's type is not one fastroute handles (None, dict, complex array...)."""


class CorruptFile(InvalidInput):
    """File bytes claim a known format but the header is truncated or absurd."""


class NoRoute(FastrouteError, LookupError):
    """No registered model can serve the request."""


class RegistrationError(FastrouteError, ValueError):
    """A model registration is invalid (duplicate, not callable, bad metadata)."""


class PolicyError(FastrouteError, ValueError):
    """A routing policy is malformed, or does not fit the data or the models."""


class ConfigError(FastrouteError, ValueError):
    """A configuration file is invalid; the message names the file and field."""


class ModelError(FastrouteError):
    """A model raised while serving a request; ``__cause__`` holds its exception."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(f"model {model!r} failed: {message}")
        self.model = model


class DeadlineExceeded(FastrouteError, TimeoutError):
    """A request's deadline passed before its model ran."""


class Overloaded(FastrouteError):
    """A bounded queue is full: the request was not accepted."""


class RouterClosed(FastrouteError, RuntimeError):
    """The router was closed; the request was not (or will not be) served."""
