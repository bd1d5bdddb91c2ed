"""Code and value fingerprints: what must invalidate a step's cache key, and what must not."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loopline.core import fingerprint
from loopline.core.fingerprint import code_fingerprint, value_fingerprint
from loopline.core.hashing import canonical_json

PIPELINE = """
from helpers2 import shout

THRESHOLD = 3
UNUSED = "not referenced"


def prepare(text):
    from helpers import clean

    return clean(text)[:THRESHOLD]


def other(text):
    from pkg import thing

    return thing(text)


def loud(text):
    return shout(text)


def boost():
    import fakegbm_lltest

    return fakegbm_lltest.VERSION


def with_torch():
    import torch

    return torch.zeros(1)


def plain(x):
    return x + 1
"""

LFS = """
from loopline.label.lf import labeling_function


def normalise(text):
    return text.lower()


@labeling_function()
def mentions_abc(text: str):
    return 1 if "abc" in text else -1
"""

FILES = {
    "pipeline.py": PIPELINE,
    "lfs.py": LFS,
    "helpers.py": "import deep\n\n\ndef clean(text):\n    return deep.strip(text)\n",
    "deep.py": "def strip(text):\n    return text.strip()\n",
    "pkg/__init__.py": "from .mod import thing\n",
    "pkg/mod.py": "def thing(text):\n    return text.upper()\n",
    "pkg/steps.py": (
        "def relative_step(text):\n    from .mod import thing\n\n    return thing(text)\n"
    ),
    "helpers2.py": "def shout(text):\n    return text.upper() + '!'\n",
    "unrelated.py": "VALUE = 1\n",
}
# Imported by name from the throw-away project (or its fake site dir): kept out of
# sys.modules before and after each test.
MODULES = ("helpers", "deep", "pkg", "pkg.mod", "pkg.steps", "helpers2", "unrelated")
FAKE = "fakegbm_lltest"  # a fake third-party distribution, installed outside the project


class Project:
    """A throw-away project folder whose files are imported by path or by name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: dict[str, str] = {}

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        importlib.invalidate_caches()

    def edit(self, relative: str, old: str, new: str) -> None:
        text = (self.root / relative).read_text()
        assert old in text, f"{old!r} not in {relative}"
        self.write(relative, text.replace(old, new))

    def load(self, relative: str = "pipeline.py") -> ModuleType:
        """(Re-)import a file by path, always under the same unique module name."""
        name = self.names.setdefault(relative, f"fp_{Path(relative).stem}_{uuid.uuid4().hex[:8]}")
        return load_by_path(name, self.root / relative)

    def fp(self, fn: Callable[..., Any]) -> str:
        return code_fingerprint(fn, self.root)

    def value(self, value: Any) -> bytes:
        return value_fingerprint(value, self.root)


def load_by_path(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def install_fake_distribution(site: Path) -> None:
    """A third-party package with its dist-info, in a site-like dir outside the project."""
    (site / FAKE).mkdir(parents=True)
    (site / FAKE / "__init__.py").write_text('VERSION = "1.0"\n')
    info = site / f"{FAKE}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {FAKE}\nVersion: 1.0\n")
    (info / "top_level.txt").write_text(f"{FAKE}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "proj"
    site = tmp_path / "site"
    project = Project(root)
    for relative, text in FILES.items():
        project.write(relative, text)
    install_fake_distribution(site)
    for name in (*MODULES, FAKE):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(root))
    fingerprint.clear_caches()
    yield project
    for name in [*MODULES, FAKE, *project.names.values()]:
        sys.modules.pop(name, None)
    fingerprint.clear_caches()


def with_versions(monkeypatch: pytest.MonkeyPatch, **versions: str) -> None:
    """Make distribution_version report other versions for some distributions."""
    real = fingerprint.distribution_version
    wanted = {name.replace("_", "-"): v for name, v in versions.items()}
    monkeypatch.setattr(
        fingerprint, "distribution_version", lambda dist: wanted.get(dist) or real(dist)
    )


# --------------------------------------------------------------------------- code


def test_fingerprint_is_a_stable_hex_digest(proj: Project) -> None:
    pipe = proj.load()
    first = proj.fp(pipe.prepare)
    assert len(first) == 64 and int(first, 16) >= 0
    assert proj.fp(pipe.prepare) == first  # memoised
    assert proj.fp(proj.load().prepare) == first  # a fresh import of the same file


def test_helper_imported_inside_a_function_is_covered(proj: Project) -> None:
    pipe = proj.load()
    prepare, other = proj.fp(pipe.prepare), proj.fp(pipe.other)
    proj.edit("helpers.py", "deep.strip(text)", "deep.strip(text).lower()")
    assert proj.fp(pipe.prepare) != prepare
    assert proj.fp(pipe.other) == other


def test_modules_imported_by_helpers_are_covered_transitively(proj: Project) -> None:
    pipe = proj.load()
    prepare, other = proj.fp(pipe.prepare), proj.fp(pipe.other)
    proj.edit("deep.py", "text.strip()", "text.strip(' ')")
    assert proj.fp(pipe.prepare) != prepare
    assert proj.fp(pipe.other) == other


def test_relative_imports_are_resolved(proj: Project) -> None:
    pipe = proj.load()
    steps = importlib.import_module("pkg.steps")  # `from .mod import thing` inside a function
    prepare, other, relative = (
        proj.fp(pipe.prepare),
        proj.fp(pipe.other),
        proj.fp(steps.relative_step),
    )
    proj.edit("pkg/mod.py", "text.upper()", "text.title()")
    assert proj.fp(pipe.other) != other  # pkg/__init__.py: `from .mod import thing`
    assert proj.fp(steps.relative_step) != relative
    assert proj.fp(pipe.prepare) == prepare


def test_unrelated_files_and_new_files_change_nothing(proj: Project) -> None:
    pipe = proj.load()
    functions = [pipe.prepare, pipe.other, pipe.loud, pipe.plain, pipe.boost]
    before = [proj.fp(f) for f in functions]
    proj.edit("unrelated.py", "VALUE = 1", "VALUE = 2")
    proj.write("brand_new.py", "import helpers\n")
    proj.write("pkg/extra.py", "X = 1\n")
    assert [proj.fp(f) for f in functions] == before


def test_other_functions_of_the_same_file_do_not_count(proj: Project) -> None:
    pipe = proj.load()
    prepare, other = proj.fp(pipe.prepare), proj.fp(pipe.other)
    proj.edit("pipeline.py", "return thing(text)", "return thing(text) + '?'")
    proj.edit("pipeline.py", 'UNUSED = "not referenced"', 'UNUSED = "still not"')
    edited = proj.load()
    assert proj.fp(edited.prepare) == prepare
    assert proj.fp(edited.other) != other


def test_referenced_constant_is_covered(proj: Project) -> None:
    pipe = proj.load()
    prepare, plain = proj.fp(pipe.prepare), proj.fp(pipe.plain)
    proj.edit("pipeline.py", "THRESHOLD = 3", "THRESHOLD = 4")
    edited = proj.load()
    assert proj.fp(edited.prepare) != prepare
    assert proj.fp(edited.plain) == plain


def test_module_level_from_import_is_covered(proj: Project) -> None:
    pipe = proj.load()
    loud, plain = proj.fp(pipe.loud), proj.fp(pipe.plain)
    proj.edit("helpers2.py", "+ '!'", "+ '!!'")
    assert proj.fp(pipe.loud) != loud
    assert proj.fp(pipe.plain) == plain


def test_same_module_helpers_are_followed_transitively(proj: Project) -> None:
    proj.write(
        "chain.py",
        """
        import helpers2

        LIMIT = 5


        def first(x):
            return second(x)


        def second(x):
            return [third(v) for v in x]


        def third(v):
            return helpers2.shout(v)[:LIMIT]


        def unrelated(v):
            return v
        """,
    )
    chain = proj.load("chain.py")
    first = proj.fp(chain.first)
    proj.edit("chain.py", "return v\n", "return v * 2\n")  # not referenced
    assert proj.fp(proj.load("chain.py").first) == first
    proj.edit("chain.py", "LIMIT = 5", "LIMIT = 6")  # read by third, through a comprehension
    assert proj.fp(proj.load("chain.py").first) != first
    first = proj.fp(proj.load("chain.py").first)
    proj.edit("helpers2.py", "+ '!'", "+ '?'")  # a module global of third
    assert proj.fp(proj.load("chain.py").first) != first


def test_globals_holding_values_and_cycles(proj: Project) -> None:
    proj.write(
        "rules.py",
        """
        from loopline.label.lf import regex_lf

        RULE = regex_lf("rule", r"abc", 1)


        def dispatch(x):
            return TABLE["run"](x) if x else RULE(str(x))


        TABLE = {"run": dispatch}
        """,
    )
    rules = proj.load("rules.py")
    before = proj.fp(rules.dispatch)
    assert proj.fp(proj.load("rules.py").dispatch) == before  # terminates, deterministic
    proj.edit("rules.py", 'r"abc"', 'r"abd"')
    assert proj.fp(proj.load("rules.py").dispatch) != before


def test_project_module_shadowing_the_standard_library(
    proj: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "tabnanny", raising=False)
    proj.write("tabnanny.py", "X = 1\n")
    proj.write("shadow.py", "def f():\n    import tabnanny\n\n    return tabnanny.X\n")
    shadow = proj.load("shadow.py")
    before = proj.fp(shadow.f)
    proj.write("tabnanny.py", "X = 2\n")
    assert proj.fp(shadow.f) != before


def test_always_included_library_versions(proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LogisticRegression

    pipe = proj.load()
    plain, prepare = proj.fp(pipe.plain), proj.fp(pipe.prepare)
    estimator = proj.value(LogisticRegression())
    with_versions(monkeypatch, scikit_learn="0.0.test")
    assert proj.fp(pipe.plain) != plain
    assert proj.fp(pipe.prepare) != prepare
    assert proj.value(LogisticRegression()) != estimator


def test_loopline_version_is_included(proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import loopline

    pipe = proj.load()
    plain = proj.fp(pipe.plain)
    monkeypatch.setattr(loopline, "__version__", "999.0")
    assert proj.fp(pipe.plain) != plain


def test_other_libraries_enter_only_where_reached(
    proj: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake distribution in a site dir outside the project stands in for lightgbm.

    It is deterministic (whatever this environment has installed) and exercises the whole
    path: import inside a function -> top-level package -> distribution -> version.
    ``torch`` need not be installed: an unresolved import is looked up by its name.
    """
    pipe = proj.load()
    functions = {f.__name__: f for f in (pipe.boost, pipe.with_torch, pipe.plain, pipe.prepare)}
    before = {name: proj.fp(f) for name, f in functions.items()}

    with_versions(monkeypatch, fakegbm_lltest="2.0")
    after = {name: proj.fp(f) for name, f in functions.items()}
    assert {n for n in functions if after[n] != before[n]} == {"boost"}

    monkeypatch.undo()
    with_versions(monkeypatch, torch="9.9")
    after = {name: proj.fp(f) for name, f in functions.items()}
    assert {n for n in functions if after[n] != before[n]} == {"with_torch"}


@pytest.mark.skipif(importlib.util.find_spec("lightgbm") is None, reason="needs lightgbm")
def test_real_lightgbm_enters_when_imported(proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    proj.write("gbm.py", "def fit():\n    import lightgbm\n\n    return lightgbm\n")
    gbm = proj.load("gbm.py")
    pipe = proj.load()
    fit, plain = proj.fp(gbm.fit), proj.fp(pipe.plain)
    with_versions(monkeypatch, lightgbm="0.0.test")
    assert proj.fp(gbm.fit) != fit
    assert proj.fp(pipe.plain) == plain


def test_libraries_inside_the_project_folder_are_not_hashed(
    proj: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = proj.root / ".venv"
    site = venv / "lib" / "python3" / "site-packages"
    proj.write(".venv/pyvenv.cfg", "home = /usr/bin\n")
    proj.write(".venv/lib/python3/site-packages/vendored_lltest/__init__.py", "X = 1\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "vendored_lltest", raising=False)
    proj.write("uses.py", "def f():\n    import vendored_lltest\n\n    return vendored_lltest.X\n")
    uses = proj.load("uses.py")
    before = proj.fp(uses.f)
    proj.write(".venv/lib/python3/site-packages/vendored_lltest/__init__.py", "X = 2\n")
    assert proj.fp(uses.f) == before
    sys.modules.pop("vendored_lltest", None)


def test_closure_values_are_covered(tmp_path: Path) -> None:
    def make(threshold: float) -> Callable[[float], bool]:
        return lambda x: x > threshold

    assert code_fingerprint(make(0.5), tmp_path) == code_fingerprint(make(0.5), tmp_path)
    assert code_fingerprint(make(0.5), tmp_path) != code_fingerprint(make(0.7), tmp_path)


def test_function_without_source_falls_back_to_its_code(tmp_path: Path) -> None:
    def define(body: str) -> Callable[..., Any]:
        namespace: dict[str, Any] = {"__name__": "interactive"}
        exec(compile(f"def f(x):\n    return {body}\n", "<stdin>", "exec"), namespace)
        fn: Callable[..., Any] = namespace["f"]
        return fn

    assert code_fingerprint(define("x + 1"), tmp_path) == code_fingerprint(
        define("x + 1"), tmp_path
    )
    assert code_fingerprint(define("x + 1"), tmp_path) != code_fingerprint(
        define("x + 2"), tmp_path
    )


def test_wrappers_and_methods_fingerprint_their_function(proj: Project) -> None:
    pipe = proj.load()

    class Wrapper:  # like @step: the object keeps the function as __wrapped__
        def __init__(self, fn: Callable[..., Any]) -> None:
            self.__wrapped__ = fn

        def __call__(self, *args: Any) -> Any:
            return self.__wrapped__(*args)

    assert proj.fp(Wrapper(pipe.prepare)) == proj.fp(pipe.prepare)
    assert proj.fp(functools.partial(pipe.plain, 1)) == proj.fp(pipe.plain)
    assert len(proj.fp(len)) == 64


# --------------------------------------------------------------------------- values


def test_json_parameters_keep_canonical_json_bytes(tmp_path: Path) -> None:
    values: list[Any] = [
        None,
        True,
        3,
        2.5,
        "text",
        [1, "a", None],
        (1, 2),
        {"b": 1, "a": {"nested": [1.5, "x"]}},
        Path("data/tweets.csv"),
        {"files": [Path("a"), Path("b")], "tags": {"y", "x"}},
        frozenset({3, 1, 2}),
    ]
    for value in values:
        assert value_fingerprint(value, tmp_path) == canonical_json(value)


def test_estimators_are_described_by_class_library_and_params(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    one = value_fingerprint(LogisticRegression(C=1.0), tmp_path)
    assert value_fingerprint(LogisticRegression(C=1.0), tmp_path) == one
    assert value_fingerprint(LogisticRegression(C=2.0), tmp_path) != one
    described = json.loads(one)
    assert described["estimator"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert described["library"].startswith("scikit-learn==")
    assert described["params"]["C"] == 1.0


def test_fitted_estimator_is_refused(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array([0, 1]))
    with pytest.raises(TypeError, match="fitted"):
        value_fingerprint(fitted, tmp_path)


def make_text_pipeline(preprocessor: Callable[[str], str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    columns = ColumnTransformer(
        [("tfidf", TfidfVectorizer(preprocessor=preprocessor, ngram_range=(1, 2)), "text")]
    )
    return Pipeline([("features", columns), ("model", LogisticRegression())])


def test_nested_estimators_cover_the_functions_they_hold(proj: Project) -> None:
    lfs = proj.load("lfs.py")
    before = proj.value(make_text_pipeline(lfs.normalise))
    assert proj.value(make_text_pipeline(proj.load("lfs.py").normalise)) == before
    proj.edit("lfs.py", "return text.lower()", "return text.casefold()")
    assert proj.value(make_text_pipeline(proj.load("lfs.py").normalise)) != before


def test_labeling_functions(proj: Project) -> None:
    from loopline.label.lf import keyword_lf, regex_lf

    abc = proj.value(regex_lf("x", r"abc", 1))
    assert proj.value(regex_lf("x", r"abc", 1)) == abc
    assert proj.value(regex_lf("x", r"abd", 1)) != abc
    assert proj.value(regex_lf("x", r"abc", 0)) != abc
    good = proj.value(keyword_lf("k", ["good"], 1))
    assert proj.value(keyword_lf("k", ["good"], 1)) == good
    assert proj.value(keyword_lf("k", ["great"], 1)) != good

    decorated = proj.value(proj.load("lfs.py").mentions_abc)
    assert proj.value(proj.load("lfs.py").mentions_abc) == decorated
    proj.edit("lfs.py", 'if "abc" in text', 'if "abd" in text')
    assert proj.value(proj.load("lfs.py").mentions_abc) != decorated


def test_callables_partials_and_bound_methods(proj: Project) -> None:
    pipe = proj.load()

    @dataclass(frozen=True)
    class Scale:
        factor: float

        def apply(self, x: float) -> float:
            return x * self.factor

    described = json.loads(proj.value(pipe.plain))
    assert described["callable"] == f"{pipe.__name__}.plain"
    assert described["code"] == proj.fp(pipe.plain)
    assert proj.value(functools.partial(pipe.plain, 1)) != proj.value(
        functools.partial(pipe.plain, 2)
    )
    assert proj.value(Scale(2.0).apply) == proj.value(Scale(2.0).apply)
    assert proj.value(Scale(2.0).apply) != proj.value(Scale(3.0).apply)
    assert proj.value([pipe.plain, {"k": pipe.loud}]) == proj.value([pipe.plain, {"k": pipe.loud}])
    assert json.loads(proj.value(len))["library"].startswith("python==")


def test_numpy_and_pandas_values(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    def fp(value: Any) -> bytes:
        return value_fingerprint(value, tmp_path)

    assert fp(np.float32(1.5)) != fp(np.float64(1.5))
    assert fp(np.int64(3)) == fp(np.int64(3))
    assert fp(np.dtype("float32")) != fp(np.dtype("float64"))
    assert json.loads(fp({"dtype": np.float32}))["dtype"] == {"type": "numpy.float32"}
    small = np.arange(10, dtype=np.int32)
    assert fp(small) == fp(small.copy())
    assert fp(small) != fp(small[::-1].copy())
    assert fp(small) != fp(small.reshape(2, 5))
    assert fp(pd.Timestamp("2024-01-02 03:04:05")) != fp(pd.Timestamp("2024-01-02 03:04:06"))
    assert fp(pd.Timedelta(seconds=5)) != fp(pd.Timedelta(seconds=6))
    with pytest.raises(TypeError, match="step output"):
        fp(np.zeros(1_000_000))


def test_unsupported_values_raise_a_helpful_type_error(tmp_path: Path) -> None:
    import pandas as pd

    with open(tmp_path / "f.txt", "w") as handle, pytest.raises(TypeError) as excinfo:
        value_fingerprint({"model": [1, handle]}, tmp_path)
    message = str(excinfo.value)
    assert "cannot be part of a cache key" in message
    assert "TextIOWrapper" in message and "['model'][1]" in message
    assert "step output" in message and "JSON-able description" in message
    with pytest.raises(TypeError, match="DataFrame"):
        value_fingerprint(pd.DataFrame({"a": [1]}), tmp_path)


CHILD = """
import importlib.util, json, sys
from pathlib import Path

from loopline.core.fingerprint import code_fingerprint, value_fingerprint
from loopline.label.lf import regex_lf


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def fingerprints(pipe, lfs, root, make_text_pipeline):
    return {
        "prepare": code_fingerprint(pipe.prepare, root),
        "loud": code_fingerprint(pipe.loud, root),
        "other": code_fingerprint(pipe.other, root),
        "lf": value_fingerprint(lfs.mentions_abc, root).hex(),
        "regex": value_fingerprint(regex_lf("x", r"abc", 1), root).hex(),
        "pipeline": value_fingerprint(make_text_pipeline(lfs.normalise), root).hex(),
        "mixed": value_fingerprint({"f": pipe.plain, "s": {"b", "a", "c"}}, root).hex(),
    }
"""

CHILD_MAIN = """
root, pipe_name, lfs_name, extra = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
sys.path[:0] = [str(root), *extra]
pipe = load(pipe_name, root / "pipeline.py")
lfs = load(lfs_name, root / "lfs.py")
print(json.dumps(fingerprints(pipe, lfs, root, MAKE)))
"""


def test_fingerprints_are_identical_in_a_fresh_process(proj: Project, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(CHILD, namespace)
    pipe, lfs = proj.load(), proj.load("lfs.py")
    here = namespace["fingerprints"](pipe, lfs, proj.root, make_text_pipeline)
    make = textwrap.dedent(
        "from typing import Any\nfrom collections.abc import Callable\n"
        + __import__("inspect").getsource(make_text_pipeline)
    )
    script = CHILD + make + "MAKE = make_text_pipeline\n" + CHILD_MAIN
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(proj.root),
            pipe.__name__,
            lfs.__name__,
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONHASHSEED": "random"},
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == here
