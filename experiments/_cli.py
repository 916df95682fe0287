"""Argument checks shared by every command line: a bad flag is an argparse error naming the
flag and the value, before any data is generated."""

import argparse

from jaxmeta.systems import SYSTEMS


def parse_seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``, or a parser error naming ``--seeds`` (every command line's
    seed parser).

    Seeds are distinct integers in ``[0, 2**32)``: a repeated seed would train the same model
    twice and report a spread over copies, and outside that range `jax.random.key` keeps only
    the low 32 bits (without x64), so ``2**32`` or ``-1`` would repeat another seed's key.
    """
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {text!r}")
    outside = [s for s in seeds if not 0 <= s < 2**32]
    if outside:
        parser.error(f"--seeds must lie in [0, 2**32), got {outside[0]} in {text!r}")
    repeated = [s for i, s in enumerate(seeds) if s in seeds[:i]]
    if repeated:
        parser.error(f"--seeds must not repeat a seed, got {text!r} ({repeated[0]} twice)")
    return seeds


def check_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *flags: str):
    """A parser error for the first of ``flags`` (attribute names) that is set and not > 0."""
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and not value > 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {value}")


def parse_systems(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """``"pendulum,dno"`` -> ``["pendulum", "dno"]``, or a parser error naming ``--systems``."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad or not names:
        parser.error(f"--systems: unknown {bad or text!r}; valid: {', '.join(SYSTEMS)}")
    return names
