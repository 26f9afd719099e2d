"""The examples and the documented commands.

1. The example analysis processor gives identical histograms eagerly, with dask, and on a LocalCluster.
2. Every command of ``README.md`` and ``examples/README.md`` runs as a new user would run it: the
   repository is cloned with ``git clone`` into a temporary folder (plus this checkout's uncommitted
   changes to tracked files, so the test checks what is about to be committed), and each ``bash`` block
   runs as one script (``set -euo pipefail``) from the clone's root, verbatim, in document order. The
   clone's own code runs (``PYTHONPATH`` is the clone; this environment provides the dependencies, the
   ``coffea-hepfm`` launcher and ``python``), so commands that write into the package (``pretrain --out
   coffea_hepfm/models/...``, ``ship``) change the clone, never this checkout. Each file gets its own
   clone, and the two run concurrently, one per core of CI's two. Not run: the install lines (``python3 -m
   venv``, ``. .venv/bin/activate``, ``pip install``), which CI has just done, and the block after
   ``<!-- test-command -->``, which is this test suite. The ``python`` blocks of the README run after its
   commands, with ``events`` opened from a file that its ``Reproduce`` block simulated.

   Sizes are the only change: the values of the options in :data:`SMALL` (event counts, epochs, time
   budgets, study sizes) are replaced by small ones, and the file names that carry a size by
   :data:`SMALL_NAMES`, so the long-running ``Reproduce the shipped models`` block runs end to end in
   seconds; it is checked for what each command writes, not for its physics (the model cards and
   ``docs/results.md`` hold the full-size numbers).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ROOT = EXAMPLES.parent


@pytest.fixture(scope="module")
def run_analysis():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import run_analysis

        yield run_analysis
    finally:
        sys.path.remove(str(EXAMPLES))


def test_three_ways_identical_histograms(run_analysis, shared_nanoaod, sim_files, hepfm_model, tmp_path):
    from analysis_processor import plot_histograms

    datasets = {
        "cms_tt_v12": [shared_nanoaod / "nano_tt_v12.root"],
        "cms_dy": [shared_nanoaod / "nano_dy.root"],
        "cms_dimuon": [shared_nanoaod / "nano_dimuon.root"],
        "sim_tth": sim_files["tth"],
        "sim_ttbar": sim_files["ttbar"],
    }
    from coffea_hepfm.graph.errors import MissingCollectionWarning

    with pytest.warns(MissingCollectionWarning, match="Photon"):  # slimmed v12: no Photon collection
        results = {
            mode: run_analysis.run(mode, datasets, hepfm_model, chunk_size=100) for mode in run_analysis.MODES
        }
    eager = results["eager"]
    assert set(eager) == set(datasets)
    for name, out in eager.items():
        n_sel = int(out["n_selected"])
        assert 0 < n_sel == out["score"].sum().value, name  # every selected event is in the histogram once
    assert int(eager["cms_tt_v12"]["n_selected"]) <= 200
    for mode in ("dask", "distributed"):
        assert run_analysis.histograms_equal(eager, results[mode]), mode
        for name in datasets:
            assert int(results[mode][name]["n_selected"]) == int(eager[name]["n_selected"])
    png = tmp_path / "score.png"
    plot_histograms(eager, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_histograms_equal_detects_a_difference(run_analysis):
    import hist
    from analysis_processor import score_axis

    a = hist.Hist(score_axis("ttH"), storage=hist.storage.Weight())
    b = a.copy()
    a.fill(score=[0.1, 0.5])
    b.fill(score=[0.1, 0.55])
    assert run_analysis.histograms_equal({"x": {"score": a}}, {"x": {"score": a.copy()}})
    assert not run_analysis.histograms_equal({"x": {"score": a}}, {"x": {"score": b}})


# -- every documented command, from a fresh clone -------------------------------------------------
#: option -> the small value the documented-commands test gives it (nothing else is changed)
SMALL = {
    "--events": "40",
    "-n": "40",
    "--epochs": "1",
    "--time-budget": "2",
    "--sizes": "10",
    "--seeds": "0",
    "--budgets": "10:1",
}
#: file names that carry a documented size (the study's N=10000 models) -> their name at the small size
SMALL_NAMES = {"_10000_pretrained_": "_10_pretrained_"}
_SETUP = re.compile(r"^(python3? -m venv|\. \S*activate|source \S*activate|(python3? -m )?pip install)\b")


def documented_blocks(markdown: str) -> list[str]:
    r"""The ``bash`` blocks of a markdown file, without the install steps and the test command.

    >>> documented_blocks("```bash\npython3 -m venv .venv && pip install -e . && coffea-hepfm demo\n```")
    ['coffea-hepfm demo\n']
    """
    text = re.sub(r"<!-- test-command -->\s*```bash\n.*?```", "", markdown, flags=re.S)
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = []
        for line in block.splitlines():
            parts = [p.strip() for p in line.split("&&")]
            kept = [p for p in parts if not _SETUP.match(p)]
            if kept != parts and kept:
                line = " && ".join(kept)
            if kept:
                lines.append(line)
        if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
            blocks.append("\n".join(lines) + "\n")
    return blocks


def shrink(text: str) -> str:
    r"""Give every option of :data:`SMALL` its small value, and sized file names their small name.

    >>> shrink("coffea-hepfm simulate tth -n 2000 --events 30000 \\\n  --epochs 40 --chunk-size 2000")
    'coffea-hepfm simulate tth -n 40 --events 40 \\\n  --epochs 1 --chunk-size 2000'
    """
    for opt, value in SMALL.items():
        text = re.sub(rf"(?<=\s)({re.escape(opt)})(\s+|=)[^\s\\]+", rf"\g<1>\g<2>{value}", text)
    for name, small in SMALL_NAMES.items():
        text = text.replace(name, small)
    return text


def _script(blocks: list[str]) -> str:
    # each block's wall and CPU seconds (its children included) follow it in the log; a failing
    # command is named by the ERR trap
    lines = [
        "set -euo pipefail",
        "TIMEFORMAT='### %R s wall, %U s user, %S s sys'",
        """trap 'echo "### failed: $BASH_COMMAND"' ERR""",
    ]
    for i, block in enumerate(blocks):
        first = block.strip().splitlines()[0]
        lines += [f"echo {shlex.quote(f'### block {i}: {first}')}", f"time {{\n{block}\n}}"]
    return "\n".join(lines) + "\n"


def _fresh_clone(dest: Path) -> Path:
    if not (ROOT / ".git").exists():
        pytest.fail(f"{ROOT} is not a git checkout: the documented-commands test clones it")
    subprocess.run(["git", "clone", "-q", os.fspath(ROOT), os.fspath(dest)], check=True)
    diff = subprocess.run(
        ["git", "-C", os.fspath(ROOT), "diff", "HEAD", "--binary"], check=True, capture_output=True
    ).stdout
    if diff:  # uncommitted edits of tracked files: test what is about to be committed
        subprocess.run(["git", "-C", os.fspath(dest), "apply", "--whitespace=nowarn"], input=diff, check=True)
    # processors/ installs as coffea_hepfm.processors (pyproject package-dir): the same view for PYTHONPATH
    (dest / "coffea_hepfm" / "processors").symlink_to(Path("..") / "processors")
    return dest


def _start(blocks: list[str], clone: Path, log: Path) -> subprocess.Popen:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    env = dict(os.environ, PATH=path, PYTHONPATH=os.fspath(clone))
    script = log.with_suffix(".sh")
    script.write_text(_script(blocks))
    with open(log, "wb") as f:  # own process group: _stop ends the commands' children too
        return subprocess.Popen(
            ["bash", os.fspath(script)],
            cwd=clone,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 900) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        where = re.findall(r"^### (block .*|failed: .*)$", text, flags=re.M)
        where = " / ".join(where[-2:]) if where else "(before the first block)"
        pytest.fail(f"documented {where} (exit {proc.returncode}); output tail:\n{text[-4000:]}")
    return text


def _digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.mark.slow
def test_documented_commands_run_from_a_fresh_clone(tmp_path):
    shipped = _digests(ROOT / "coffea_hepfm" / "models")
    clones = {name: _fresh_clone(tmp_path / name) for name in ("readme", "examples")}
    readme_md = (clones["readme"] / "README.md").read_text()
    readme = [shrink(b) for b in documented_blocks(readme_md)]
    examples = [
        shrink(b) for b in documented_blocks((clones["examples"] / "examples" / "README.md").read_text())
    ]
    assert readme[0].strip() == "coffea-hepfm demo", readme[0]
    assert (
        len(readme) == 3 and "coffea-hepfm check-inputs" in readme[1]
    )  # "Is my data in the model's domain?"
    assert "coffea-hepfm study" in readme[2] and "coffea-hepfm ship" in readme[2]
    assert len(examples) == 2 and examples[0].count("end_to_end.py") == 2, examples
    # README's python blocks need `events`: a file that its Reproduce block simulated.
    prelude = "import glob\nfrom coffea_hepfm.nanoaod import open_events\n"
    prelude += "events = open_events(sorted(glob.glob('data/sim/tth/*.root'))[0])\n"
    snippets = re.findall(r"```python\n(.*?)```", readme_md, flags=re.S)
    assert snippets
    readme += [f"python -c {shlex.quote(prelude + s)}\n" for s in snippets]

    runs = [
        (_start(blocks, clones[name], tmp_path / f"{name}.log"), tmp_path / f"{name}.log")
        for name, blocks in (("readme", readme), ("examples", examples))
    ]
    try:
        out_readme, out_examples = (_finish(p, log) for p, log in runs)
    finally:
        for p, _ in runs:
            _stop(p)
    for text in (out_readme, out_examples):  # per-block times: pytest -s shows them
        print("\n".join(re.findall(r"^### .*$", text, flags=re.M)))
    assert _digests(ROOT / "coffea_hepfm" / "models") == shipped  # the clone's package was written, not ours

    # README: the demo's result, and what each Reproduce command writes (in the clone).
    clone = clones["readme"]
    assert "ROC AUC ttH vs ttbar" in out_readme
    assert json.loads((clone / "runs" / "domain" / "check.json").read_text())["verdict"] in ("ok", "drift")
    assert "were temporary and are deleted" in out_readme  # names no folder that is gone
    sim = clone / "data" / "sim"
    assert len([p for p in sim.iterdir() if any(p.glob("*.root"))]) == 17
    assert any((clone / "data" / "train").glob("*.parquet"))
    assert (clone / "runs" / "study" / "study.json").is_file()
    models = _digests(clone / "coffea_hepfm" / "models")
    changed = {
        n.split(".")[0] for n, d in models.items() if n.endswith(".safetensors") and d != shipped.get(n)
    }
    assert changed == {
        "backbone",
        "tth_vs_ttbar",
        "vbf_vs_ggf",
        "wh_vs_zh",
        "zprime_vs_ttbar",
        "cp_tth_vs_tta",
    }
    # examples/README: both end-to-end runs, and the manual steps on the same folder.
    clone = clones["examples"]
    for run in ("e2e", "e2e_zp"):
        assert (clone / "runs" / run / "summary.json").is_file(), run
    manifest = json.loads((clone / "runs" / "e2e_zp" / "ntuples" / "ntuple.json").read_text())
    assert [c["kind"] for c in manifest["corrections"]] == ["pileup", "muon"]  # --example-corrections
    fileset = json.loads((clone / "runs" / "e2e" / "fileset.json").read_text())
    paths = [f for ds in fileset.values() for f in ds["files"]]
    assert paths and all(f.startswith("sim/train/") for f in paths), paths  # relative to the JSON
    assert out_examples.count("already done") == 2  # manual step 1 after end_to_end.py
    assert (clone / "runs" / "e2e" / "score.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(clone.glob("*.png"))  # nothing written into the working directory unasked
    assert "nothing to compare" in out_examples and "identical in all modes" not in out_examples


def test_a_failing_documented_command_fails_the_test(tmp_path):
    proc = _start(["true\n", "true\nfalse\necho never\n"], tmp_path, tmp_path / "fail.log")
    with pytest.raises(pytest.fail.Exception, match="block 1: true / failed: false"):
        _finish(proc, tmp_path / "fail.log")
    assert "never" not in (tmp_path / "fail.log").read_text()
