"""The run configuration of ``experiments.run``: one frozen value, built from the command line
in one function (`parse_args`) and passed to every worker."""

import argparse
import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

from jaxmeta import systems

from ._cli import import_system, parse_names, parse_seeds, parse_system
from .regimes import DEFAULT_REGIME, REGIMES, regime_overrides
from .registry import METHODS


@dataclasses.dataclass(frozen=True)
class Preset:
    """Budgets and sizes; ``paper`` is the paper's (App. F), ``quick`` fits a laptop CPU."""

    width: int
    depth: int
    epochs: int
    val_every: int
    inner_steps: int
    mesh_points_3d: int | None  # coarser field-error mesh for DNO/TGC (None: the system's)


PRESETS = {
    "quick": Preset(width=32, depth=2, epochs=150, val_every=50, inner_steps=3, mesh_points_3d=12),
    "paper": Preset(width=100, depth=4, epochs=10_000, val_every=1, inner_steps=3,
                    mesh_points_3d=None),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run of ``experiments.run`` depends on (flags resolved against the preset).

    ``regime`` names the task regime of `experiments.regimes` whose system overrides apply
    first; ``overrides`` are the user's ``--set`` system fields on top, as ``(field, value)``
    pairs (frozen); `set` gives them as a dict, `system_overrides` both merged.
    """

    system: str = "pendulum"
    system_source: str | None = None  # "package.module:Class" of a user's system
    regime: str = DEFAULT_REGIME
    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0,)
    shots: int | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    preset: str = "quick"
    epochs: int = PRESETS["quick"].epochs
    val_every: int = PRESETS["quick"].val_every
    latent_init: str = "mean"
    latent_state: str = "fresh"
    latent_penalty: float = 0.0  # λ_z in units of the data's loss scale (see `loss_scale`)
    hypernet_penalty: float = 0.0  # λ_φ, same units
    converged: bool = False  # also score the converged test-time protocol
    data_seed: int = 0
    out: Path = Path("runs/pendulum")
    devices: int | None = None
    progress: bool = True
    restart: bool = False  # discard stored work of another configuration instead of refusing
    coordinator: str | None = None  # HOST:PORT of `jax.distributed` (several processes)
    num_processes: int = 1
    process_id: int = 0

    @property
    def budget(self) -> Preset:
        """The preset's sizes (width, depth, inner steps, 3-D mesh)."""
        return PRESETS[self.preset]

    @property
    def set(self) -> dict:
        """The user's ``--set`` overrides only."""
        return dict(self.overrides)

    @property
    def system_overrides(self) -> dict:
        """The fields the system is built with: the regime's, then ``--set`` on top."""
        return {**regime_overrides(self.regime, self.system), **self.set}

    @classmethod
    def from_json(cls, record: dict, out: Path) -> "RunConfig":
        """`to_json` inverted (``out`` replaces the recorded directory, so a moved run still
        loads); keys `RunConfig` does not have (``preset_values``) are dropped, and a user's
        system (``system_source``) is imported and registered again."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: _tuples(v) for k, v in record.items() if k in fields}
        values["overrides"] = tuple((k, _tuples(v)) for k, v in record.get("set", {}).items())
        values["regime"] = stored_regime(record)
        values["out"] = Path(out)
        if values.get("system_source"):
            import_system(values["system_source"])
        return cls(**values)

    def to_json(self) -> dict:
        """The configuration as stored in ``results.json`` (with the preset's values)."""
        record = dataclasses.asdict(self)
        del record["overrides"]
        return json.loads(json.dumps({
            **record, "methods": list(self.methods), "seeds": list(self.seeds), "set": self.set,
            "regime_overrides": regime_overrides(self.regime, self.system),
            "out": str(self.out), "preset_values": dataclasses.asdict(self.budget),
        }))  # fmt: skip


#: The regime of stored runs made before regimes existed.
PRE_REGIME = "ours"


def stored_regime(config_record: dict) -> str:
    """The regime of a stored run's configuration (results.json's ``"config"``)."""
    return config_record.get("regime", PRE_REGIME)


def _tuples(value):
    """JSON lists back to the tuples the systems' fields and `RunConfig` hold."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _parse_overrides(parser, system_name: str, items: list[str]) -> dict:
    """``["field=literal", ...]`` -> ``{field: value}``, checked against the system's fields."""
    fields = [f.name for f in dataclasses.fields(systems.SYSTEMS[system_name])]
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            parser.error(f"--set {item!r}: expected FIELD=VALUE with FIELD one of: "
                         f"{', '.join(fields)}")  # fmt: skip
        try:
            overrides[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            parser.error(f"--set {item!r}: {text.strip()!r} is not a Python literal")
    return overrides


def _check_processes(parser, args) -> None:
    """``--coordinator``, ``--num-processes`` and ``--process-id`` come together and agree."""
    flags = ("coordinator", "num_processes", "process_id")
    given = [f for f in flags if getattr(args, f) is not None]
    if given and len(given) < 3:
        parser.error("--coordinator, --num-processes and --process-id go together; got only "
                     + ", ".join("--" + f.replace("_", "-") for f in given))  # fmt: skip
    if not given:
        return
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        parser.error(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if args.num_processes < 1:
        parser.error(f"--num-processes must be >= 1, got {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")


def parse_args(argv=None, *, doc: str | None = None) -> RunConfig:
    """Command line -> `RunConfig` (argparse errors name the flag and the bad value)."""
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--system", default="pendulum",
                   help=f"one of: {', '.join(systems.SYSTEMS)}; or your own, "
                        "package.module:Class (an AbstractSystem subclass)")  # fmt: skip
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of: {', '.join(METHODS)} (default: all)")  # fmt: skip
    p.add_argument("--seeds", default="0", help="comma-separated model seeds (default: 0)")
    p.add_argument("--shots", type=int, default=None,
                   help="support trajectories K per function (default: the paper's K, 20 for "
                        "mass-spring, 10 otherwise); a K above it generates a dataset with K "
                        "trajectories per function, one below it uses the first K")  # fmt: skip
    p.add_argument("--regime", default=DEFAULT_REGIME, choices=tuple(REGIMES),
                   help=f"task regime: the system's parameter and initial-condition ranges "
                        f"(experiments.regimes; default {DEFAULT_REGIME}, 'ours' is jaxmeta's "
                        f"own defaults); --set applies on top")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field of the system (repeatable, on top of the regime), a "
                        "Python literal, e.g. "
                        "--set 'ic_bounds=((-0.5, 0.5), (-0.5, 0.5), (1.0, 2.0))'")  # fmt: skip
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="budget: quick (minutes on a laptop CPU) or paper (App. F)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--val-every", type=int, default=None, help="override validation interval")
    p.add_argument("--latent-init", default="mean", choices=("mean", "zero"),
                   help="test-time latent initialisation (zero: Tables 9-10 ablation); a "
                        "test-time setting: a finished run is re-scored, not retrained")  # fmt: skip
    p.add_argument("--converged", action="store_true",
                   help="also score the converged test-time protocol (the paper's 100 steps, "
                        "then each function's fit to convergence; a test-time setting)")  # fmt: skip
    p.add_argument("--latent-state", default="fresh", choices=("fresh", "persistent"),
                   help="modulations: the training latents' Adam state, restarted at every "
                        "visit (fresh, default) or kept across meta-steps (persistent)")  # fmt: skip
    p.add_argument("--latent-penalty", type=float, default=0.0, metavar="LAMBDA_Z",
                   help="modulations: the later version's locality regulariser on the latents, "
                        "in units of the data's loss scale (the mean squared training velocity)")  # fmt: skip
    p.add_argument("--hypernet-penalty", type=float, default=0.0, metavar="LAMBDA_PHI",
                   help="modulations: the same on the hypernetwork's linear map (same units)")  # fmt: skip
    p.add_argument("--data-seed", type=int, default=0, help="seed of the dataset (default 0)")
    p.add_argument("--out", default=None, help="output directory (default: runs/<system>)")
    p.add_argument("--devices", type=int, default=None,
                   help="devices to shard the training functions over (default: the most "
                        "available devices dividing their number)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--restart", action="store_true",
                   help="discard stored work of a (method, seed) made with another "
                        "configuration, or a corrupt checkpoint, and start it over (default: "
                        "refuse, naming what differs)")  # fmt: skip
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="several processes: the address of process 0 (jax.distributed)")  # fmt: skip
    p.add_argument("--num-processes", type=int, default=None, help="several processes: N")
    p.add_argument("--process-id", type=int, default=None, help="several processes: 0..N-1")
    args = p.parse_args(argv)
    _check_processes(p, args)
    system, source = parse_system(p, args.system)
    methods = parse_names(p, "--methods", args.methods, METHODS)
    seeds = parse_seeds(p, args.seeds)
    if not 0 <= args.data_seed < 2**32:
        p.error(f"--data-seed must lie in [0, 2**32), got {args.data_seed}")
    for flag in ("latent_penalty", "hypernet_penalty"):
        value = getattr(args, flag)
        if not (value >= 0 and value < float("inf")):
            p.error(f"--{flag.replace('_', '-')} must be >= 0 and finite, got {value}")
    for flag in ("shots", "epochs", "val_every", "devices"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    preset = PRESETS[args.preset]
    return RunConfig(
        system=system,
        system_source=source,
        regime=args.regime,
        methods=tuple(methods),
        seeds=tuple(seeds),
        shots=args.shots,
        overrides=tuple(_parse_overrides(p, system, args.set).items()),
        preset=args.preset,
        epochs=args.epochs or preset.epochs,
        val_every=args.val_every or preset.val_every,
        latent_init=args.latent_init,
        latent_state=args.latent_state,
        latent_penalty=args.latent_penalty,
        hypernet_penalty=args.hypernet_penalty,
        converged=args.converged,
        data_seed=args.data_seed,
        out=Path(args.out or f"runs/{system}"),
        devices=args.devices,
        progress=not args.no_progress,
        restart=args.restart,
        coordinator=args.coordinator,
        num_processes=args.num_processes or 1,
        process_id=args.process_id or 0,
    )
