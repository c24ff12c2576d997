"""One error hierarchy for all of tether.

Every error says what was wrong, the value involved, and what to do about it. Errors carry fields so that the
CLI (exit status 2, one line) and the API (an HTTP status) translate them in one place.
"""

from __future__ import annotations

from typing import Any


class TetherError(Exception):
    """Base of every error tether raises on purpose.

    ``message`` says what went wrong; ``hint`` says what to do. ``http_status`` is what the API answers.
    """

    http_status: int = 400
    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        self.message = message
        self.hint = hint
        self.fields = fields
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InvalidInputError(TetherError):
    """The caller gave something tether cannot use (a bad path, a malformed spec, an unreadable dataset)."""

    http_status = 422


class NotFoundError(TetherError):
    """A named thing (version, alias, blob) does not exist."""

    http_status = 404


class ConflictError(TetherError):
    """The request contradicts the stored state (an ambiguous prefix, a dirty tree without --allow-dirty)."""

    http_status = 409


class IntegrityError(TetherError):
    """Stored content does not match its recorded digest: something was changed after it was written.

    Exit status 1, like every check that failed to verify (2 is for bad input)."""

    http_status = 500
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        expected: str,
        actual: str,
        hint: str | None = None,
        **fields: Any,
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message, hint=hint, expected=expected, actual=actual, **fields)


class PermissionDeniedError(TetherError):
    """The caller's role may not do this (change a gate policy, press a rollout button)."""

    http_status = 403


class ImmutableError(TetherError):
    """Something tried to change a record that is immutable once written (a model version, an alias event)."""

    http_status = 409


class MissingExtraError(TetherError):
    """An optional feature needs a package that is not installed."""

    http_status = 501

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed",
            hint=f"install it with: pip install 'tether[{extra}]'",
            package=package,
            extra=extra,
        )


class ExternalCommandError(TetherError):
    """A subprocess tether depends on (git, a training command) failed."""

    http_status = 500


def validation_problems(error: Any, *, top: str = "(top)", prefix: str = "") -> str:
    """A pydantic ``ValidationError`` as one line naming each field and its rule: ``a.b: msg; c: msg``."""
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in err['loc']) or top}: {str(err['msg']).removeprefix('Value error, ')}"
        for err in error.errors()
    )
