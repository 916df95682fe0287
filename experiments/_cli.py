"""Argument checks shared by every command line: a bad flag is an argparse error naming the
flag and the value, before any data is generated."""

import argparse
import difflib
import importlib

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
    return parse_names(parser, "--systems", text, tuple(SYSTEMS))


def unknown(flag: str, value: str, valid) -> str:
    """The message for an unknown name given to ``flag``: the valid ones, and the closest
    one (`difflib`) where one is close."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{flag}: unknown {value!r}{hint}; valid: {', '.join(map(str, valid))}"


def parse_names(parser: argparse.ArgumentParser, flag: str, text: str, valid) -> list[str]:
    """``"ro,fw"`` -> ``["ro", "fw"]``, each one of ``valid``; otherwise a parser error
    (exit status 2) naming ``flag``, with a "did you mean" for a close name."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        parser.error(unknown(flag, bad[0] if bad else text, valid))
    return names


def import_system(source: str):
    """The system class ``"package.module:Class"`` names, imported and registered
    (`jaxmeta.systems.register`). Raises `ValueError` or `TypeError` naming what is wrong."""
    from jaxmeta.systems import register

    module, _, name = source.partition(":")
    if not module or not name:
        raise ValueError(f"{source!r} is not of the form package.module:Class")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise ValueError(f"cannot import {module!r} ({err})") from err
    except AttributeError as err:
        raise ValueError(f"module {module!r} has no {name!r}") from err
    return register(cls)


def parse_system(parser: argparse.ArgumentParser, text: str) -> tuple[str, str | None]:
    """``--system``: a built-in name (``"pendulum"``), or your own system as
    ``package.module:Class`` (imported and registered). Returns the system's name and its
    source (None for a built-in); a parser error naming ``--system`` otherwise."""
    if ":" not in text:
        return parse_names(parser, "--system", text, tuple(SYSTEMS))[0], None
    try:
        cls = import_system(text)
    except (ValueError, TypeError) as err:
        parser.error(f"--system {text}: {err}")
    return cls.name, text
