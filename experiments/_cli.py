"""Argument checks shared by the ConCerNet command lines: a bad flag is an argparse error
naming the flag and the value, before any data is generated."""

import argparse


def parse_seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``, or a parser error naming ``--seeds``."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {text!r}")
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds must not repeat a seed, got {text!r}")
    return seeds


def check_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *flags: str):
    """A parser error for the first of ``flags`` (attribute names) that is set and not > 0."""
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and not value > 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {value}")
