"""Griffe extension (mkdocstrings, mkdocs.yml): signatures of Equinox Modules.

An ``eqx.Module`` that declares fields and no ``__init__`` gets its ``__init__`` from
dataclasses at import time, which static analysis cannot see: the API reference would show
``AutoDecoding()`` with no parameters. For every such class this extension imports it, reads
``inspect.signature`` (names, order, kinds and defaults as Equinox builds them), and adds an
``__init__`` whose annotations are the fields' own, as written in the source.
"""

import importlib
import inspect

import griffe

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _runtime(cls: griffe.Class):
    try:
        module = importlib.import_module(cls.module.path)
    except ImportError:
        return None
    obj = module
    for part in cls.path[len(cls.module.path) + 1 :].split("."):
        obj = getattr(obj, part, None)
    return obj


def _is_generated_module_init(obj) -> bool:
    try:
        import equinox as eqx
    except ImportError:
        return False
    if not (isinstance(obj, type) and issubclass(obj, eqx.Module)) or inspect.isabstract(obj):
        return False
    # A user-written __init__ has a source file; the dataclass one is generated code.
    init = obj.__init__
    code = getattr(init, "__code__", None)
    return code is not None and not code.co_filename.endswith(".py")


def _annotation(cls: griffe.Class, name: str):
    member = cls.all_members.get(name)
    return getattr(member, "annotation", None) if member is not None else None


def _add_init(cls: griffe.Class) -> None:
    obj = _runtime(cls)
    if obj is None or not _is_generated_module_init(obj):
        return
    parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
    for p in inspect.signature(obj).parameters.values():
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        parameters.append(
            griffe.Parameter(
                p.name, annotation=_annotation(cls, p.name), kind=_KINDS[p.kind], default=default
            )
        )
    init = griffe.Function(
        "__init__",
        lineno=cls.lineno,
        endlineno=cls.lineno,
        parent=cls,
        parameters=griffe.Parameters(*parameters),
        returns="None",
    )
    cls.set_member("__init__", init)


def _walk(obj, seen: set) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        if member.is_class:
            if "__init__" not in member.members:
                _add_init(member)
            _walk(member, seen)
        elif member.is_module:
            _walk(member, seen)


class EquinoxModuleSignatures(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        _walk(pkg, set())
