"""Errors that reach the user as one line (``teravox: error: ...``) and a non-zero exit.

Anything raised deliberately by teravox derives from :class:`TeravoxError`; the CLI
prints its message and exits with status 2, never with a traceback.
"""

from __future__ import annotations

import reprlib

#: Most characters of a value quoted in a message: a parameter file may hold anything.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def shown(value: object) -> str:
    """``repr(value)``, cut short: a message quotes a value, never a whole (possibly huge) structure."""
    return _REPR.repr(value)


class TeravoxError(Exception):
    """Base class: the message is complete and meant for the user."""


class ParamError(TeravoxError):
    """A parameter is unknown, has the wrong type, or contradicts another."""


class InputError(TeravoxError):
    """A scan or side file is missing, unreadable or not shaped as expected."""

    def __init__(self, file: object, dataset: str | None, problem: str):
        self.file, self.dataset, self.problem = str(file), dataset, problem
        where = f"{file}" + (f" [{dataset}]" if dataset else "")
        super().__init__(f"{where}: {problem}")


class PlanError(TeravoxError):
    """The plan cannot be made, or does not match the files a stage finds."""


class StageError(TeravoxError):
    """A stage job failed in a way the user can act on (missing chunk file, ...)."""
