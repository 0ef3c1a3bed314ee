"""Two fidelity settings for every method: ``reference`` computes what the authors' code computes,
``paper`` follows the papers' equations literally.

Where the two differ, each difference is one named switch declared once, in the method's own
module, in a ``SwitchTable``: its reference value, its paper value, and a line saying what the
reference does and where (file and line of the authors' code). A config picks a preset with
``model.fidelity`` and may override single switches with ``model.switches.<name>``; the method reads
the resolved values as attributes (``self.behaviour.pool``), never ``if cfg.fidelity == ...``.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

FIDELITIES = ("reference", "paper")


@dataclasses.dataclass(frozen=True)
class Switch:
    """One difference between the authors' code and the paper's text."""

    name: str
    reference: Any
    paper: Any
    doc: str
    """What the reference does and where (e.g. ``moco/GRU.py`` lines 30-49 of maoyunyao/CMD)."""
    choices: tuple[Any, ...] = ()
    """Every value an override may take (reference and paper included); empty: any value."""

    def check(self, value: Any) -> None:
        if self.choices and value not in self.choices:
            raise ValueError(f"switches.{self.name}: one of {', '.join(map(str, self.choices))}, "
                             f"got {value!r}")


class SwitchTable:
    """The switches of one method, resolved against a fidelity and per-switch overrides."""

    def __init__(self, method: str, *switches: Switch) -> None:
        names = [s.name for s in switches]
        if len(set(names)) != len(names):
            raise ValueError(f"{method}: duplicate switch names in {names}")
        self.method = method
        self.switches = {s.name: s for s in switches}
        REGISTRY[method] = self

    def resolve(self, fidelity: str, overrides: dict[str, Any] | None = None) -> types.SimpleNamespace:
        """The switch values of ``fidelity``, with ``overrides`` (name -> value) on top."""
        if fidelity not in FIDELITIES:
            raise ValueError(f"fidelity: one of {', '.join(FIDELITIES)}, got {fidelity!r}")
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.switches))
        if unknown:
            known = ", ".join(self.switches) or "none"
            raise ValueError(f"switches: unknown {', '.join(unknown)} for {self.method}; known: {known}")
        values = {name: getattr(s, fidelity) for name, s in self.switches.items()}
        values.update(overrides)
        for name, value in overrides.items():
            self.switches[name].check(value)
        return types.SimpleNamespace(**values)

    def describe(self) -> str:
        """A Markdown table of the switches (for docs and ``--help``)."""
        lines = [f"{self.method}:", "| switch | reference | paper | what the reference does |",
                 "| --- | --- | --- | --- |"]
        lines += [f"| `{s.name}` | `{s.reference}` | `{s.paper}` | {s.doc} |"
                  for s in self.switches.values()]
        return "\n".join(lines)


REGISTRY: dict[str, SwitchTable] = {}
"""Method name -> its switch table; filled as the method modules are imported."""
