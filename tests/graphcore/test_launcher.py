"""``python -m popef.graphcore SCRIPT.py [ARGS]``: Graphcore scripts run unchanged, and this
library keeps working inside them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

import popef as ours
from popef.graphcore import installed, launcher
from popef.graphcore import popef as surface
from popef.runtime import ModelRunner

from .scripts import GRAPHCORE_SCRIPT
from .test_model_runtime import small_model


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "popef.graphcore", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_graphcore_script_runs_unchanged(tmp_path):
    small_model(tmp_path / "small.popef")
    (tmp_path / "script.py").write_text(GRAPHCORE_SCRIPT)
    done = run(tmp_path, "script.py", "small.popef", "compressed.popef")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "executable small replicas 1 iterations 1 main [5] programs "
        "{0: 'WeightsFromHost', 5: 'Program'}"
    )
    assert lines[1] == "anchor x h2d_x [5] False INPUT F32 [2, 3] 24"
    assert lines[2] == "anchor y anchor_d2h_y [5] False OUTPUT F32 [2, 4] 32"
    # the rewritten file holds the same model, its executable compressed, and runs the same
    before, after = ours.Reader(), ours.Reader()
    before.parse_file(tmp_path / "small.popef")
    after.parse_file(tmp_path / "compressed.popef")
    assert after.metadata() == before.metadata()
    assert after.executables()[0].compressed
    x = np.arange(6).reshape(2, 3).astype(np.float32)
    with ModelRunner(tmp_path / "small.popef") as reference:
        expected = reference.execute({"x": x})
    printed = {line.split()[1]: line for line in lines if line.startswith("output ")}
    assert printed == {
        name: f"output {name} {array.ravel().tolist()}" for name, array in expected.items()
    }


LIBRARY_INSIDE = """
import sys
import popef
import model_runtime
from popef import Reader

assert __name__ == "__main__", __name__
print("argv", sys.argv)
print("graphcore reader", hasattr(popef.Reader(), "parseFile"), Reader is popef.Reader)
print("runner", model_runtime.ModelRunner.__module__)

# this library, inside the same script: its submodules, names and lazily imported packages
import numpy as np
import popef.runtime
from popef.runtime import GraphBuilder
from popef.reader import Reader as OurReader

g = GraphBuilder()
x = g.add_input("x", "F32", (2,))
g.add_output(g.add_node("Relu", [x]), "y")
g.save("inside.popef", executable_name="inside")
reader = OurReader()
reader.parse_file("inside.popef")
print("models", [m.name for m in reader.models()], popef.PopefError.__name__)
with popef.runtime.ModelRunner("inside.popef") as runner:
    print("ours", runner.execute({"x": np.array([-1, 2], np.float32)})["y"].tolist())
graphcore = popef.Reader()
graphcore.parseFile("inside.popef")
print("graphcore", graphcore.metadata()[0].executable())
sys.exit(int(sys.argv[1]))
"""


def test_our_library_works_inside_the_script(tmp_path):
    (tmp_path / "inside.py").write_text(LIBRARY_INSIDE)
    done = run(tmp_path, "inside.py", "3", "--flag")
    assert done.returncode == 3, done.stderr  # the script's own exit status
    assert done.stdout.splitlines() == [
        "argv ['inside.py', '3', '--flag']",
        "graphcore reader True True",
        "runner popef.graphcore.model_runtime",
        "models ['inside'] PopefError",
        "ours [0.0, 2.0]",
        "graphcore inside",
    ]


def test_the_script_folder_comes_first_on_the_path(tmp_path):
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "helper.py").write_text("import popef\nREADER = popef.Reader\n")
    (folder / "main.py").write_text(
        textwrap.dedent("""
        import helper, popef
        print(helper.READER is popef.Reader, helper.READER.__module__)
    """)
    )
    done = run(tmp_path, "tools/main.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True popef.graphcore.reading\n"


def test_errors_of_the_script_and_of_the_command(tmp_path):
    (tmp_path / "fails.py").write_text("import popef\npopef.Reader().parseFile('missing.popef')\n")
    done = run(tmp_path, "fails.py")
    assert done.returncode == 1
    assert "Traceback" in done.stderr  # the script's error, as `python fails.py` shows it
    assert "PopefError: cannot read 'missing.popef'" in done.stderr

    done = run(tmp_path, "absent.py")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "error: cannot run script 'absent.py': no such file\n"
    done = run(tmp_path, ".")
    assert done.stderr == "error: cannot run script '.': not a file\n"
    done = run(tmp_path, "--bogus")
    assert done.returncode == 1 and done.stderr.startswith("error: unknown option '--bogus'")
    done = run(tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("usage: python -m popef.graphcore")
    done = run(tmp_path, "--help")
    assert done.returncode == 0 and "real Poplar" in done.stdout


def test_the_script_traceback_is_the_one_python_prints(tmp_path):
    """Only the script's frames: none of the launcher's, for an error raised while running
    and for a script that does not compile; ``__file__`` is absolute, as under Python."""
    (tmp_path / "raises.py").write_text(
        "import os\nassert os.path.isabs(__file__)\n"
        "def inner():\n    raise ValueError('boom')\ninner()\n"
    )
    (tmp_path / "broken.py").write_text("x = (\n")
    for script in ("raises.py", "broken.py"):
        done = run(tmp_path, script)
        plain = subprocess.run(
            [sys.executable, script], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == plain.stderr and "popef" not in done.stderr


def test_installed_restores_the_modules():
    import popef as before

    with installed() as modules:
        import model_runtime

        import popef

        assert popef is modules["popef"] and isinstance(popef, launcher.GraphcorePopefModule)
        assert popef.Reader is surface.Reader and popef.Writer is surface.Writer
        assert popef.runtime is sys.modules["popef.runtime"]
        assert model_runtime.ModelRunner.__module__ == "popef.graphcore.model_runtime"
        assert popef.__path__ == before.__path__
    import popef

    assert popef is before and "model_runtime" not in sys.modules
