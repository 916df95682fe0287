"""A system defined in a user's own module runs through ``experiments.run --system
module:Class`` (registered, recorded, imported again), without editing the library."""

import json
import sys
import textwrap

import pytest

from experiments import run, store
from jaxmeta import systems

MODULE = '''
from typing import ClassVar

import jax.numpy as jnp
from jaxmeta import systems


class Morse(systems.AbstractHamiltonianSystem):
    """H = p²/2 + D (1 − exp(−a q))², μ = (D, a)."""

    param_ranges: tuple = ((0.5, 2.0), (0.5, 1.5))
    ic_bounds: tuple = ((-0.5, 0.5), (-0.5, 0.5))
    dt: float = 0.1
    t1: float = 3.0
    mesh_bounds: tuple | None = ((-1.0, 1.0), (-1.0, 1.0))
    mesh_points: int = 20

    name: ClassVar[str] = "user-morse"
    state_names: ClassVar[tuple] = ("q", "p")
    param_names: ClassVar[tuple] = ("D", "a")

    def hamiltonian(self, x, mu):
        (q, p), (depth, a) = x, mu
        return p**2 / 2 + depth * (1 - jnp.exp(-a * q)) ** 2

    def analytic_field(self, x, mu):
        (q, p), (depth, a) = x, mu
        e = jnp.exp(-a * q)
        return jnp.stack([p, -2 * depth * a * e * (1 - e)])
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_systems.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_systems:Morse"
    systems.SYSTEMS.pop("user-morse", None)
    sys.modules.pop("user_systems", None)


def test_a_users_system_runs_from_the_command_line(user_module, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--system", user_module, "--methods", "scratch,ro", "--epochs", "1", "--shots", "2",
            "--val-every", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    assert run.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["system"] == "user-morse"
    assert results["config"]["system_source"] == user_module
    assert set(results["methods"]) == {"scratch", "ro"}
    assert "| ro | " in (out / "table.md").read_text()
    # Read back in a fresh registry (another process would not have it): imported again.
    systems.SYSTEMS.pop("user-morse")
    config = store.run_config(out)
    assert config.system == "user-morse" and "user-morse" in systems.SYSTEMS
    # The same command again reuses the finished work.
    capsys.readouterr()
    assert run.main(argv) == 0
    assert "ro       reusing 1 finished seed(s)" in capsys.readouterr().out


def test_register_refuses_what_it_cannot_use(user_module):
    with pytest.raises(SystemExit):
        run.parse_args(["--system", "user_systems:Nope"])
    with pytest.raises(TypeError, match="must be an AbstractSystem subclass"):
        systems.register(int)
    with pytest.raises(TypeError, match="is abstract"):
        systems.register(systems.AbstractHamiltonianSystem)
    import user_systems

    assert systems.register(user_systems.Morse) is user_systems.Morse
    assert systems.register(user_systems.Morse) is user_systems.Morse  # again: nothing
    clash = type("Pendulum2", (user_systems.Morse,), {"name": "pendulum"})
    with pytest.raises(ValueError, match="system name 'pendulum' is taken by"):
        systems.register(clash)
    assert systems.get_system("user-morse").name == "user-morse"


def test_a_bad_system_source_is_a_flag_error(capsys):
    for text, message in (("nosuchmodule_xyz:Cls", "cannot import 'nosuchmodule_xyz'"),
                          ("json:Nope", "module 'json' has no 'Nope'"),
                          ("json:JSONDecoder", "must be an AbstractSystem subclass")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            run.parse_args(["--system", text])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"--system {text}: " in err and message in err
