"""The type stubs of the compiled modules match the modules.

``_native.pyi`` is written by hand from the C method tables, and
``_cffi_epoll.pyi`` from the cffi cdef: nothing keeps them in step with the
C code but this file.  For each stub class it checks, both ways, that the
stub and the built module have the same public and ``_private`` names, and
for each name that it is the same kind of thing: a method, a property (and
settable exactly when the stub has a setter) or a class attribute.  The
zero-argument methods are called on a fresh core and their results checked
against the stub's return annotations.

mypy itself is not run here (CI runs it over the package; see the
``typecheck`` extra); this checks what mypy cannot: that the stubs tell the
truth about the compiled code.  The stubs are read next to the imported
package, so against an installed wheel this also checks they were shipped.
"""

import ast
import builtins
import inspect
import os
import sys
from pathlib import Path

import pytest

import fastselectors

PACKAGE = Path(fastselectors.__file__).parent


def _condition(test):
    """Evaluate a stub's ``if`` test (``sys.platform == "linux"``...) for
    this interpreter, as a type checker would for its platform."""
    return eval(compile(ast.Expression(test), "<stub>", "eval"),
                {"sys": sys})


def _statements(body):
    """The statements of *body*, with those of true ``if`` branches (and
    false ones' ``else``) flattened in."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _statements(node.body if _condition(node.test)
                                   else node.orelse)
        else:
            yield node


class StubClass:
    """What a stub says of one class: name -> kind, where kind is
    "method", "property", "settable property" or "attribute"; and the
    return annotation (source text) of each method that takes only
    self."""

    def __init__(self, node):
        self.name = node.name
        self.node_bases = [ast.unparse(b) for b in node.bases]
        self.members = {}
        self.nullary_returns = {}
        for stmt in _statements(node.body):
            if isinstance(stmt, ast.FunctionDef):
                decorators = {ast.unparse(d) for d in stmt.decorator_list}
                if "property" in decorators:
                    self.members[stmt.name] = "property"
                elif "{}.setter".format(stmt.name) in decorators:
                    self.members[stmt.name] = "settable property"
                else:
                    self.members[stmt.name] = "method"
                    args = stmt.args
                    if (not is_dunder(stmt.name)
                            and len(args.posonlyargs + args.args) == 1
                            and not (args.vararg or args.kwonlyargs
                                     or args.kwarg)):
                        self.nullary_returns[stmt.name] = ast.unparse(
                            stmt.returns)
            elif isinstance(stmt, ast.AnnAssign):
                self.members[stmt.target.id] = "attribute"
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    self.members[target.id] = "attribute"


def read_stub(filename):
    """(module-level names, {class name: StubClass}) of a stub file."""
    path = PACKAGE / filename
    if not path.exists():
        pytest.fail("{} is missing from the package at {}".format(
            filename, PACKAGE))
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names, classes = set(), {}
    for stmt in _statements(tree.body):
        if isinstance(stmt, ast.ClassDef):
            classes[stmt.name] = StubClass(stmt)
            names.add(stmt.name)
        elif isinstance(stmt, ast.AnnAssign):
            names.add(stmt.target.id)
        elif isinstance(stmt, ast.FunctionDef):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets)
        elif isinstance(stmt, ast.ImportFrom):
            # Only "import x as x" re-exports a name from a stub (PEP 484).
            names.update(a.asname for a in stmt.names if a.asname == a.name)
    # A class inherits the members of a base defined in the same stub.
    for cls in classes.values():
        for base in cls.node_bases:
            if base in classes:
                cls.members = {**classes[base].members, **cls.members}
                cls.nullary_returns = {**classes[base].nullary_returns,
                                       **cls.nullary_returns}
    return names, classes


def is_dunder(name):
    return name.startswith("__") and name.endswith("__")


def runtime_kind(cls, name):
    """The kind (as StubClass.members) of ``cls.name`` at run time; a
    property's settability is found by setting it on a fresh instance."""
    attr = inspect.getattr_static(cls, name)
    if inspect.isgetsetdescriptor(attr) or isinstance(attr, property):
        return "property"       # refined by the caller (needs an instance)
    if callable(attr):
        return "method"
    return "attribute"


def settable(obj, name):
    try:
        setattr(obj, name, getattr(obj, name))
    except AttributeError:
        return False
    return True


def annotation_types(text):
    """'int | None' -> (int, NoneType), for isinstance()."""
    types = []
    for part in text.split("|"):
        part = part.strip()
        types.append(type(None) if part == "None"
                     else getattr(builtins, part))
    return tuple(types)


# --- __init__.pyi against the package ------------------------------------

def test_package_stub_names_the_public_names():
    """``__init__.pyi`` (what type checkers see of the package) has exactly
    the names the package exports on this platform: nobody keeps a copy of
    the run-time choice of classes by hand but this test."""
    names, classes = read_stub("__init__.pyi")
    assert names == set(fastselectors.__all__) | {"__version__", "__all__"}
    for name, cls in classes.items():
        base = [b for b in cls.node_bases]
        assert issubclass(getattr(fastselectors, name),
                          getattr(fastselectors._selectors, base[0])), name


# --- _native.pyi against fastselectors._native --------------------------

@pytest.fixture(scope="module")
def native_module():
    return pytest.importorskip(
        "fastselectors._native",
        reason="the native tier is not built for this interpreter")


def native_stub():
    return read_stub("_native.pyi")


def test_native_module_names(native_module):
    stub_names, _ = native_stub()
    # A private class of the stub's own (a shared base) is not in the module.
    stub_names = {name for name in stub_names if not name.startswith("_")}
    runtime = {name for name in vars(native_module) if not is_dunder(name)}
    assert stub_names == runtime, (
        "only in _native.pyi: {}; only in the built module: {}".format(
            sorted(stub_names - runtime), sorted(runtime - stub_names)))


@pytest.mark.parametrize("class_name", ["EpollCore", "PollCore"])
def test_native_class_members(native_module, class_name):
    _, classes = native_stub()
    cls = getattr(native_module, class_name, None)
    if cls is None:
        assert class_name not in classes
        pytest.skip("no {} on this platform".format(class_name))
    stub = classes[class_name]
    runtime = {name for name in vars(cls) if not is_dunder(name)}
    stubbed = {name for name in stub.members if not is_dunder(name)}
    assert stubbed == runtime, (
        "{}: only in _native.pyi: {}; only in the built module: {}".format(
            class_name, sorted(stubbed - runtime),
            sorted(runtime - stubbed)))
    core = cls()
    try:
        for name in sorted(runtime):
            kind = runtime_kind(cls, name)
            if kind == "property" and settable(core, name):
                kind = "settable property"
            assert stub.members[name] == kind, (class_name, name)
    finally:
        core.close()


@pytest.mark.parametrize("class_name", ["EpollCore", "PollCore"])
def test_native_nullary_method_results(native_module, class_name):
    """Each method that takes no argument returns what the stub says
    (close() last: the others need an open core)."""
    _, classes = native_stub()
    cls = getattr(native_module, class_name, None)
    if cls is None:
        pytest.skip("no {} on this platform".format(class_name))
    returns = classes[class_name].nullary_returns
    assert "close" in returns
    core = cls()
    try:
        for name in sorted(returns, key=lambda name: name == "close"):
            result = getattr(core, name)()
            assert isinstance(result, annotation_types(returns[name])), (
                "{}.{}() returned {!r}; the stub says {}".format(
                    class_name, name, result, returns[name]))
    finally:
        core.close()


def test_native_class_attribute_types(native_module):
    _, classes = native_stub()
    for class_name, stub in classes.items():
        if class_name.startswith("_"):
            continue        # the stub's own shared base
        cls = getattr(native_module, class_name)
        for name, kind in stub.members.items():
            if kind == "attribute":
                assert isinstance(getattr(cls, name), int), (class_name, name)


# --- _cffi_epoll.pyi against fastselectors._cffi_epoll ------------------

@pytest.fixture(scope="module")
def cffi_module():
    return pytest.importorskip(
        "fastselectors._cffi_epoll",
        reason="the cffi tier's module is not built for this interpreter "
               "(or cffi is not installed)")


def test_cffi_lib_names(cffi_module):
    """``lib`` has exactly the cdef's names: the stub's _Lib."""
    _, classes = read_stub("_cffi_epoll.pyi")
    stubbed = set(classes["_Lib"].members)
    runtime = set(dir(cffi_module.lib))
    assert stubbed == runtime, (
        "only in _cffi_epoll.pyi: {}; only in the built module: {}".format(
            sorted(stubbed - runtime), sorted(runtime - stubbed)))
    for name, kind in classes["_Lib"].members.items():
        value = getattr(cffi_module.lib, name)
        if kind == "attribute":
            assert isinstance(value, int), name
        else:
            assert callable(value), name


def test_cffi_ffi_names(cffi_module):
    """The stub's ``ffi`` is the part of cffi's FFI that _kernel_cffi uses:
    a subset of the real one."""
    names, classes = read_stub("_cffi_epoll.pyi")
    assert {"ffi", "lib"} <= names
    for name in classes["_FFI"].members:
        assert hasattr(cffi_module.ffi, name), name


def test_py_typed_marker():
    assert (PACKAGE / "py.typed").is_file()
    assert os.path.getsize(PACKAGE / "py.typed") == 0
