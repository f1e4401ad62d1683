"""Command-line flags made from the settings: one per setting, named and described as it is.

Every setting of `servers.config.Settings` is a flag of the commands that use
it (`--grpc-port` for `grpc_port`), with the setting's description, its default
and its `CONDUCTOR_*` variable in the help. A flag given wins over the variable;
neither given, the setting's default holds. Values are checked once, by the
settings, so a bad one is refused the same way from a flag or a variable.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from pydantic.fields import FieldInfo

from servers.config import ConfigurationError, Settings, load_settings

CommandT = TypeVar("CommandT", bound=Callable[..., Any])

#: The flags every command that reads the store takes.
STORE = ("var_dir", "database_url")
#: The logging flags (every command logs).
LOGGING = ("log_level", "log_format")


def flag_of(name: str) -> str:
    """The flag of setting `name`: "--grpc-port" for "grpc_port"."""
    return "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    """The variable of setting `name`: "CONDUCTOR_GRPC_PORT"."""
    return f"CONDUCTOR_{name.upper()}"


def _concrete(annotation: Any) -> Any:
    """`int` for `int | None`; the annotation itself otherwise."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
        return kinds[0] if len(kinds) == 1 else str
    return annotation


def shown_default(field: FieldInfo) -> str:
    """The default as the help shows it."""
    default = field.get_default(call_default_factory=True)
    if default is None or default == "":
        return "unset"
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default) or "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def _option(name: str, field: FieldInfo) -> Callable[[CommandT], CommandT]:
    kind = _concrete(field.annotation)
    flag = flag_of(name)
    described = field.description or name.replace("_", " ").capitalize() + "."
    common: dict[str, Any] = {
        "default": None,  # unset: the variable, else the setting's default
        "help": f"{described}  [default: {shown_default(field)}; env: {env_of(name)}]",
    }
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, **common)
    if typing.get_origin(kind) is Literal:
        return click.option(flag, name, type=click.Choice(typing.get_args(kind)), **common)
    if kind in {int, float}:
        return click.option(flag, name, type=kind, **common)
    if kind is Path:
        return click.option(flag, name, type=click.Path(path_type=Path), **common)
    return click.option(flag, name, type=str, **common)


def settings_options(*names: str) -> Callable[[CommandT], CommandT]:
    """Add the flags of settings `names` (all of them when none are named) to a command."""
    fields = Settings.model_fields
    chosen = names or tuple(fields)

    def decorate(command: CommandT) -> CommandT:
        for name in reversed(chosen):
            command = _option(name, fields[name])(command)
        return command

    return decorate


def settings_from(flags: Mapping[str, Any]) -> Settings:
    """The settings, from the variables with the given `flags` on top.

    Raises:
        click.UsageError: A value is invalid: each bad setting on a line of its own,
            named by its flag and variable.
    """
    try:
        return load_settings(**{name: value for name, value in flags.items() if value is not None})
    except ConfigurationError as error:
        raise click.UsageError("; ".join(error.problems)) from None
