"""The run configuration of ``experiments.concernet``: the registry of ConCerNet's Table-1
systems (by `jaxmeta.systems.CONSERVED_SYSTEMS` name, with the paper's numbers and the test
rollouts of the authors' code) and one frozen value built from the command line by
`parse_args`."""

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from jaxmeta.systems import CONSERVED_SYSTEMS

from ._cli import check_positive, parse_names, parse_seeds


@dataclasses.dataclass(frozen=True)
class Task:
    """A row of ConCerNet's Table 1: its label, the RK4 substeps and span of the test
    rollouts (the authors' ``--eval_t_end``: a long extrapolation beyond the training window,
    where conservation matters) and the paper's (mean, std) of MSE baseline, MSE ConCerNet,
    violation baseline, violation ConCerNet."""

    label: str
    substeps: int
    span: float
    paper: tuple[tuple[float, float], ...]


# Keyed by `CONSERVED_SYSTEMS` name; rollouts saved at --eval-points (the authors' 1001).
TASKS = {
    "spring": Task("Ideal spring mass", 1, 50.0,
                   ((0.209, 0.172), (0.076, 0.063), (0.096, 0.080), (0.002, 0.002))),
    "chemical": Task("Chemical kinetics", 1, 10.0,
                     ((0.064, 0.006), (0.031, 0.033), (0.025, 0.012), (0.003, 0.001))),
    "kepler": Task("Kepler", 5, 5.0,
                   ((0.854, 0.103), (0.328, 0.026), (0.060, 0.011), (0.009, 0.012))),
    "heat": Task("Heat equation", 1, 1.0,
                 ((0.133, 0.054), (0.098, 0.073), (0.686, 0.546), (0.178, 0.045))),
}  # fmt: skip
# The heat equation's data (`--heat-ics`): the authors' (one pulse, t in [0, 10], 100 training
# trajectories) or our earlier choice (three bumps, t in [0, 1], 50 trajectories).
HEAT_DATA = {
    "pulse": {},
    "bumps": {"initial": "bumps", "t1": 1.0, "num_times": 50, "num_trajectories": 50},
}
# Systems learned in an autoencoder latent (§4.3): name -> code dimension (paper: 9). The
# autoencoder is trained first on the noisy training states; stages 1 and 2 then run on latent
# trajectories (z, ż) = (E(x), ∂E/∂x ẋ) (eq. 9-10), and rollouts are decoded and scored in the
# original space against the true invariant (the authors' `eval_ae`).
AUTOENCODED = {"heat": 9}
# The Table-1 systems have no parameters: their methods take an empty μ.
NO_PARAMS = np.zeros(0, np.float32)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on, resolved from the command line by `parse_args`."""

    systems: tuple[str, ...]
    seeds: tuple[int, ...]
    out: Path
    epochs: int = 1000
    ae_epochs: int = 1000
    num_test: int = 10
    noise: float = 0.01
    lr: float = 1e-3
    batch: int = 10
    contrastive_loss: str = "nce"
    num_invariants: int | None = None
    dyn_batch_points: int | None = None
    eval_t1: float | None = None
    eval_points: int = 1001
    invariant: str = "learned"
    heat_ics: str = "pulse"
    progress: bool = True
    command: str = ""

    def system(self, name: str):
        """The system a run of ``name`` trains on (for heat, the data `heat_ics` picks)."""
        return CONSERVED_SYSTEMS[name](**(HEAT_DATA[self.heat_ics] if name == "heat" else {}))

    def span(self, name: str) -> float:
        return TASKS[name].span if self.eval_t1 is None else self.eval_t1

    def learned_invariants(self, name: str) -> int:
        """The number ``m`` of invariants stage 1 learns for ``name``."""
        if self.num_invariants is None:
            return self.system(name).num_invariants
        return self.num_invariants

    def to_json(self) -> dict:
        return json.loads(json.dumps({**dataclasses.asdict(self), "out": str(self.out)}))


def _parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.concernet", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--system", default="all",
                   help=f"comma-separated systems from {', '.join(TASKS)}, or all")  # fmt: skip
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (paper: 3)")
    p.add_argument("--epochs", type=int, default=1000, help="epochs per stage (paper 1000)")
    p.add_argument("--num-test", type=int, default=10, help="test initial states")
    p.add_argument("--noise", type=float, default=0.01, help="noise std on x and dx/dt")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch", type=int, default=10, help="trajectories per minibatch")
    p.add_argument("--contrastive-loss", choices=["nce", "square_ratio"], default="nce",
                   help="stage-1 loss: nce (paper eq. 4, batch-normalised latents, eq. 8) or "
                        "square_ratio (the scale-free ratio of the authors' code, their default; "
                        "no batch normalisation)")  # fmt: skip
    p.add_argument("--num-invariants", type=int, default=None,
                   help="learned invariants m (default: the system's; the authors' Kepler "
                        "script: 1)")  # fmt: skip
    p.add_argument("--dyn-batch-points", type=int, default=None,
                   help="stage-2 minibatches of this many points instead of --batch "
                        "trajectories (the authors' scripts: 100)")  # fmt: skip
    p.add_argument("--eval-t1", type=float, default=None,
                   help="test rollout span (default: the authors' per system: spring 50, "
                        "chemical 10, kepler 5, heat 1)")  # fmt: skip
    p.add_argument("--ae-epochs", type=int, default=None,
                   help="autoencoder epochs of the autoencoded systems (heat; default: "
                        "--epochs)")  # fmt: skip
    p.add_argument("--invariant", choices=["learned", "true"], default="learned",
                   help="what ConCerNet projects onto: the contrastively learned invariant (the "
                        "paper) or the system's exact one (an oracle: no stage 1; separates the "
                        "projection's effect from how well stage 1 learned the law)")  # fmt: skip
    p.add_argument("--heat-ics", choices=list(HEAT_DATA), default="pulse",
                   help="heat-equation data: pulse (the authors' code: one Gaussian pulse, "
                        "trained on t in [0, 10], 100 trajectories) or bumps (three bumps, t in "
                        "[0, 1], 50 trajectories)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--eval-points", type=int, default=1001, help="saved points per test rollout")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    return p


def parse_args(argv=None, *, doc: str | None = None) -> Config:
    """Command line -> `Config` (a bad flag: a parser error naming it, exit status 2; ``doc``:
    the ``--help`` text)."""
    p = _parser(doc)
    args = p.parse_args(argv)
    seeds = parse_seeds(p, args.seeds)
    check_positive(p, args, "epochs", "num_test", "lr", "batch", "num_invariants",
                   "dyn_batch_points", "eval_t1", "ae_epochs", "eval_points")  # fmt: skip
    if args.noise < 0:
        p.error(f"--noise must be >= 0, got {args.noise}")
    if args.eval_points < 3:
        p.error(f"--eval-points must be >= 3, got {args.eval_points}")
    names = list(TASKS) if args.system == "all" else parse_names(p, "--system", args.system, TASKS)
    command = "python -m experiments.concernet " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    return Config(
        systems=tuple(names), seeds=tuple(seeds), out=args.out, epochs=args.epochs,
        ae_epochs=args.epochs if args.ae_epochs is None else args.ae_epochs,
        num_test=args.num_test, noise=args.noise, lr=args.lr, batch=args.batch,
        contrastive_loss=args.contrastive_loss, num_invariants=args.num_invariants,
        dyn_batch_points=args.dyn_batch_points, eval_t1=args.eval_t1,
        eval_points=args.eval_points, invariant=args.invariant, heat_ics=args.heat_ics,
        progress=not args.no_progress, command=command,
    )  # fmt: skip
