"""Parameter tables of the nodes: one spec type, one declaration, one number check.

A node lists its parameters as :class:`ParamSpec` rows and calls :func:`declare_parameters`,
which declares each with a descriptor (description, read-only unless ``dynamic``, constraints,
integer or floating-point range) and returns the start-up values, numbers checked. Double
parameters are declared with dynamic typing so that an integer on the command line
(``-p max_gap_s:=2``) is accepted; :func:`check_number` then checks every value given to them,
at start-up and in the nodes' set-parameters callbacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ParamSpec", "check_number", "declare_parameters", "refuse"]


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: name, default, description and what values it takes."""

    name: str
    default: Any
    description: str
    dynamic: bool = False
    """Changeable at run time (the others are read-only once the node runs)."""
    constraints: str = ""
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    """A double parameter's closed range (its upper end may be ``math.inf``)."""

    @property
    def is_number(self) -> bool:
        """A double parameter (declared with dynamic typing, checked by :func:`check_number`)."""
        return self.float_range is not None


def check_number(spec: ParamSpec, value: Any) -> float:
    """``value`` as a float within ``spec.float_range``; ``ValueError`` naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{spec.name} must be a finite number, got {value!r}")
    assert spec.float_range is not None
    lo, hi = spec.float_range
    if not lo <= value <= hi:
        raise ValueError(f"{spec.name} must be in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def declare_parameters(node: Any, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Declare ``specs`` on an rclpy ``node``; returns ``{name: value}`` at start-up.

    Numbers are checked with :func:`check_number` (``ValueError`` for a bad one).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    specs = list(specs)
    for spec in specs:
        descriptor = ParameterDescriptor(
            description=spec.description,
            read_only=not spec.dynamic,
            additional_constraints=spec.constraints,
            dynamic_typing=spec.is_number,
        )
        if spec.int_range is not None:
            lo, hi = spec.int_range
            descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
        if spec.float_range is not None and math.isfinite(spec.float_range[1]):
            lo, hi = spec.float_range
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=lo, to_value=hi, step=0.0)
            ]
        node.declare_parameter(spec.name, spec.default, descriptor)
    values = {spec.name: node.get_parameter(spec.name).value for spec in specs}
    for spec in specs:
        if spec.is_number:
            values[spec.name] = check_number(spec, values[spec.name])
    return values


def refuse(node: Any, names: Iterable[str], reason: str) -> Any:
    """A failed ``SetParametersResult`` for a change of ``names``, leaving their descriptors as
    they were.

    rclpy sets the stored descriptor's type of a dynamically typed parameter to the new value's
    type before the callbacks run, so a refused string for a double parameter would otherwise
    leave it described as a string. The type is put back to the current value's.
    """
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.parameter import Parameter

    for name in names:
        if node.has_parameter(name):
            value = node.get_parameter(name).value
            node.describe_parameter(name).type = Parameter.Type.from_parameter_value(value).value
    return SetParametersResult(successful=False, reason=reason)
