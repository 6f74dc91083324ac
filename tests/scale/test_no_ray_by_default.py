# ruff: noqa: F811 - the job fixture imported from scale_fixtures is redefined as a test argument
"""Ray stays out of every default path, checked in one fresh interpreter: importing the
runtime and its users, building the CLI with every plugin, an in-process extraction, and a
CLI training with the data-parallel modules imported. One subprocess for what three tests
in tests/core/test_ray_runtime.py, tests/scale/test_ray_extraction.py and
tests/core/training/test_ray_training.py each paid a Python, torch and transformers
start-up for; they were subsets of this one and are gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scale_fixtures import job  # noqa: F401 - fixture

from tests.core.training.test_ray_training import args


def test_no_default_path_imports_ray(tiny_model_dir: Path, job: dict, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "def ray_loaded(): return sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "import featurelens.core.ray.runtime, featurelens.core.training.ray_training, featurelens.scale.cluster\n"
        "assert not ray_loaded(), ('runtime', ray_loaded())\n"
        "from featurelens.cli import make_cli, main\n"
        "from featurelens.core.host import manager as plugins\n"
        "from featurelens.core.extraction import ExtractSpec, extract\n"
        "make_cli(plugins.get_host())\n"
        f"extract(ExtractSpec(model={job['model']!r}, hookpoint={job['hookpoint']!r}, corpus={job['corpus']!r},\n"
        f"        tokens=64, context=16, device='cpu', split='all'), progress=False,\n"
        f"        store={str(tmp_path / 's.duckdb')!r})\n"
        "assert not ray_loaded(), ('extraction', ray_loaded())\n"
        "import featurelens.core.training.data_parallel, featurelens.core.training.distributed\n"
        "try:\n"
        f"    main({args(tiny_model_dir, tmp_path / 'sae', '--tokens', '256')!r})\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "assert not ray_loaded(), ('training', ray_loaded())\n"
        "print('no ray')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "no ray", done.stdout[-2000:]
    assert (tmp_path / "sae").is_dir() and (tmp_path / "s.duckdb").is_file()  # both runs did their work
