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
    "ExecutorError",
    "ExperimentError",
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


class ExecutorError(ConfigError):
    """An executor setting is invalid (out of range, wrong type). A ConfigError, so
    code catching the settings' old error keeps working."""


class ExperimentError(PolicyError):
    """An experiment (split, canary, shadow, bandit split) is set up wrongly. A
    PolicyError, so code catching the settings' old error keeps working."""


class ModelError(FastrouteError):
    """A model raised while serving a request; ``__cause__`` holds its exception."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(f"model {model!r} failed: {message}")
        self.model = model
        self.detail = message

    @classmethod
    def caused_by(cls, model: str, error: BaseException, context: str = "") -> ModelError:
        """A ModelError for ``model`` whose ``__cause__`` is ``error``, described as
        ``Type: message`` even when the error's ``__str__`` itself raises."""
        try:
            described = f"{type(error).__name__}: {error}"
        except BaseException:  # noqa: BLE001 - the model's exception type, not ours, is broken
            described = f"{type(error).__name__} (its message could not be formatted)"
        failure = cls(model, context + described)
        failure.__cause__ = error
        return failure

    def copy(self) -> ModelError:
        """The same failure as a new exception object (one per request it fails)."""
        twin = ModelError(self.model, self.detail)
        twin.__cause__ = self.__cause__
        return twin


class DeadlineExceeded(FastrouteError, TimeoutError):
    """A request's deadline passed before its model ran."""


class Overloaded(FastrouteError):
    """A bounded queue is full: the request was not accepted."""


class RouterClosed(FastrouteError, RuntimeError):
    """The router was closed; the request was not (or will not be) served."""
