"""Unit conversion for values read from files (``units`` attributes) and given on the CLI."""

from __future__ import annotations

import re

#: factor to metres
LENGTH = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "micron": 1e-6,
          "microns": 1e-6, "micrometer": 1e-6, "micrometre": 1e-6, "nm": 1e-9, "meter": 1.0,
          "metre": 1.0, "millimeter": 1e-3, "millimetre": 1e-3}
#: factor to keV
ENERGY = {"kev": 1.0, "ev": 1e-3, "mev": 1e3, "j": 1.0 / 1.602176634e-16}
#: factor to degrees
ANGLE = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "rad": 57.29577951308232, "radian": 57.29577951308232,
         "radians": 57.29577951308232, "mrad": 0.05729577951308232}

#: factor to seconds
TIME = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "µs": 1e-6,
        "μs": 1e-6, "min": 60.0}

KINDS = {"length": LENGTH, "energy": ENERGY, "angle": ANGLE, "time": TIME}


def factor(unit: str | None, kind: str, default: str) -> float:
    """Multiplier taking a value in ``unit`` (or ``default`` when None/empty) to teravox's unit.

    teravox's units: metres for lengths, keV for energies, degrees for angles, seconds for times.
    Raises ValueError for a unit it does not know.
    """
    table = KINDS[kind]
    key = (unit or default).strip()
    for candidate in (key, key.lower()):
        if candidate in table:
            return table[candidate]
    raise ValueError(f"unknown {kind} unit {unit!r} (known: {', '.join(sorted(table))})")


def parse_quantity(text: str, kind: str, default: str) -> float:
    """'30cm' / '0.3 m' / '20 keV' / '0.3' (in ``default``) → value in teravox's unit."""
    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([A-Za-zµμ]*)\s*", text)
    if not m:
        raise ValueError(f"expected a number with an optional unit, got {text!r}")
    return float(m.group(1)) * factor(m.group(2) or None, kind, default)
