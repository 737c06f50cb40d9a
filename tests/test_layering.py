"""The shape of the house: which package may import which (imports inside functions count too).

    cli, ui                      the top: imported by nothing (but ``python -m canora``)
    training                     composes refiner and vocoder for training; inference never imports it
    pipeline, analysis           compose refiner and vocoder for conversion and reports
    refiner | vocoder            the two models: never import each other
    conditioning                 the features of a waveform
    io                           files (audio, mels, checkpoints), on top of dsp
    dsp, config, errors          the ground floor: signal processing, no model
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "canora"
FLOOR = {"dsp", "io", "config", "errors"}


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """canora module -> the canora modules it imports anywhere in its body."""
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        mod = _module(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("canora")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.startswith("canora"):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args \
                    and isinstance(node.args[0], ast.JoinedStr):
                head = node.args[0].values[0]
                if isinstance(head, ast.Constant) and str(head.value).startswith("canora"):
                    found.add(str(head.value).rstrip("."))
        out[mod] = found
    return out


IMPORTS = _imports()


def _area(module: str) -> str:
    """The top-level area of ``canora.x.y`` (``x``), or "" for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(rule: str, source_areas: set[str], banned_areas: set[str]) -> list[str]:
    bad = []
    for mod, imported in IMPORTS.items():
        if _area(mod) not in source_areas:
            continue
        for target in imported:
            if _area(target) in banned_areas and _area(target) != _area(mod):
                bad.append(f"{mod} -> {target} ({rule})")
    return sorted(set(bad))


def test_the_tree_was_read():
    assert {"canora.dsp.mel", "canora.training.loop", "canora.pipeline", "canora.cli"} <= set(IMPORTS)


def test_the_floor_imports_no_model():
    everything_above = {_area(m) for m in IMPORTS} - FLOOR - {""}
    assert _violations("the floor imports no model", FLOOR, everything_above) == []


def test_dsp_is_the_ground_floor():
    assert _violations("dsp imports only dsp, config and errors", {"dsp"}, {"io"}) == []


def test_refiner_and_vocoder_never_import_each_other():
    assert _violations("refiner and vocoder are independent", {"refiner"}, {"vocoder"}) == []
    assert _violations("refiner and vocoder are independent", {"vocoder"}, {"refiner"}) == []


def test_inference_never_imports_training():
    inference = {_area(m) for m in IMPORTS} - {"training", "cli", "ui"}
    assert _violations("inference never imports training", inference, {"training"}) == []


@pytest.mark.parametrize("top", ["cli", "ui"])
def test_nothing_imports_the_cli_or_the_ui(top):
    users = {_area(m) for m in IMPORTS} - {"cli", "ui", "__main__"}
    assert _violations(f"nothing imports {top}", users, {top}) == []


def test_models_do_not_import_the_pipeline_or_analysis():
    assert _violations("models stay below the pipeline", {"refiner", "vocoder", "conditioning"},
                       {"pipeline", "analysis", "streaming", "job", "render", "backends"}) == []


def _module_graph() -> dict[str, set[str]]:
    """canora module -> the canora modules it imports (anywhere in its body); ``from pkg import submodule`` is an
    import of the submodule, not of the package's ``__init__``."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        mod = _module(path)
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in IMPORTS]
                names = subs if len(subs) == len(node.names) else [node.module, *subs]
            for name in names:
                while name and name not in IMPORTS:  # a name inside a module: the module
                    name = name.rpartition(".")[0]
                if name.startswith("canora") and name != mod:
                    edges.add(name)
        graph[mod] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle_anywhere():
    """No module imports (at any depth, inside functions too) a module that imports it back: each decision has one
    home (the backend in ``canora.backends``; the model classes never import their exporters)."""
    assert _cycles(_module_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_model_classes_never_import_an_exporter():
    exporters = {"canora.export", "canora.refiner.onnx", "canora.vocoder.onnx"}
    graph = _module_graph()
    for mod in ("canora.refiner.api", "canora.refiner.base", "canora.vocoder.api", "canora.vocoder.nsf",
                "canora.vocoder.hifigan", "canora.refiner.model"):
        assert not graph[mod] & exporters, f"{mod} imports {sorted(graph[mod] & exporters)}"


#: the CLI parses, calls the library and reports: no function under cli/ is longer than this (lines, def to end)
MAX_CLI_FUNCTION_LINES = 60


def _long_functions(root: Path, limit: int) -> list[str]:
    """``dir/file.py:line name (N lines)`` of every function or method under ``root`` longer than ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_cli_function_is_longer_than_60_lines():
    """Longer means it does more than parse, call and report: split it at its seams, or move the work into the
    library."""
    assert _long_functions(SRC / "cli", MAX_CLI_FUNCTION_LINES) == []


def test_the_length_check_names_a_long_function(tmp_path):
    pkg = tmp_path / "cli"
    pkg.mkdir()
    fits = "def fits():\n" + "    x = 1\n" * (MAX_CLI_FUNCTION_LINES - 1)  # 60 lines
    too_long = "class C:\n    def too_long(self):\n" + "        x = 1\n" * MAX_CLI_FUNCTION_LINES  # 61 lines
    (pkg / "m.py").write_text(fits + "\n\n" + too_long)
    assert _long_functions(pkg, MAX_CLI_FUNCTION_LINES) == ["cli/m.py:64 too_long (61 lines)"]


def test_the_command_line_help_imports_no_torch():
    """``canora --help`` (and every command's parser, with its defaults from the run configs) is built without
    importing torch: the configs live in torch-free modules (2.4 s -> 0.6 s for the help)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from canora.cli import build_parser\n"
        "build_parser().format_help()\n"
        "for name in ('train-refiner', 'train-vocoder', 'train-content', 'convert', 'live', 'vocode'):\n"
        "    build_parser(only=name)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
