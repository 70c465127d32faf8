"""What every config model shares: the strict, immutable base and the field helpers.

Config objects are immutable all the way down (``FrozenMap``), reject typos and
coerced types (``Frozen``), and hold numbers to Google's documented bounds (``within``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from infra import limits

__all__ = ["Frozen", "FrozenMap", "below", "checked_service_account_email", "within"]

K = TypeVar("K")
V = TypeVar("V")


def within(default: int, bounds: tuple[int, int]) -> Any:
    """A field defaulting to ``default`` and held to Google's documented ``(low, high)``."""
    return Field(default, ge=bounds[0], le=bounds[1])


def checked_service_account_email(v: str, what: str) -> str:
    """``v`` if it is a service account email; else the error naming where it comes from."""
    if not limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(v):
        raise ValueError(
            f"'{v}' is not a service account email "
            f"(ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com): {what}"
        )
    return v


def _freeze(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(value))


#: A read-only mapping once parsed (config objects are immutable all the way down).
FrozenMap = Annotated[Mapping[K, V], AfterValidator(_freeze)]


class Frozen(BaseModel):
    # strict: "600" is not 600, 1.5 is not 1; extra="forbid": a typo is an error, not a no-op.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def below(low: str, high: str):
    """A model check that ``low`` <= ``high`` (two fields of one object)."""

    def check(self: Any) -> Any:
        lo, hi = getattr(self, low), getattr(self, high)
        if lo > hi:
            raise ValueError(f"{low} {lo} is above {high} {hi}")
        return self

    return check
