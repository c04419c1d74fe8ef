"""What spdesk.spec bundles from the checkout, whatever way spdesk is installed in the build venv.

``spdesk.resources`` is the repository's ``resources/`` folder, mapped by pyproject.toml's
``package-dir``. A plain install copies it to ``site-packages/spdesk/resources``, but an editable
install (``pip install -e .``) only maps it through an import hook PyInstaller cannot see: a build
from there had no resources package and could not start. So the spec analyses the checkout itself
and takes the resources from where pyproject.toml says they are, as pip does.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOOKS = Path(__file__).resolve().parent / "hooks"
RESOURCES = "spdesk.resources"


def _setuptools_config(repo: Path) -> Any:
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["tool"]["setuptools"]


def resource_folder(repo: Path = REPO) -> Path:
    """The folder that pyproject.toml's package-dir maps ``spdesk.resources`` to."""
    folder: Path = repo / _setuptools_config(repo)["package-dir"][RESOURCES]
    if folder.name != RESOURCES.rsplit(".", 1)[1] or not (folder / "__init__.py").is_file():
        # hooks/pre_find_module_path finds the package by its folder's name, beside the others.
        raise SystemExit(f"{RESOURCES} must map to a package folder named resources, not {folder}.")
    return folder


def resource_datas(repo: Path = REPO) -> list[tuple[str, str]]:
    """PyInstaller ``datas``: the package-data files of ``spdesk.resources`` (the patterns in
    pyproject.toml), each into its folder under ``spdesk/resources``."""
    folder = resource_folder(repo)
    patterns = _setuptools_config(repo)["package-data"][RESOURCES]
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    destination = Path(*RESOURCES.split("."))
    return [(str(path), str(destination / path.parent.relative_to(folder))) for path in files]


# Packages that read their own data files when imported, which PyInstaller does not collect:
# kernels (which transformers 5 requires and imports whenever installed) reads
# _internals/python_depends.json, and without it no diffusers model imports.
IMPORT_TIME_DATA = ("kernels",)
# What pip records of where a package was installed from: the builder's folder for spdesk.
INSTALL_ORIGIN = "direct_url.json"
# The CUDA runtime's file names (Linux, macOS, Windows), as ctypes lookups in transformers and
# kernels make PyInstaller collect them from the build machine's CUDA toolkit. Libraries only:
# torch's sources, which its hook collects as data, have a .../cutlass_mock_imports/cuda/cudart.py.
CUDA_RUNTIME = re.compile(r"(lib)?cudart.*\.(so|dll|dylib)", re.IGNORECASE)


def without_install_origin(metadata: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """copy_metadata's ``datas``, each metadata folder file by file, less direct_url.json."""
    datas = []
    for source, destination in metadata:
        folder = Path(source)
        if not folder.is_dir():
            datas.append((source, destination))
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != INSTALL_ORIGIN)
        datas += [(str(p), str(Path(destination, p.parent.relative_to(folder)))) for p in files]
    return datas


def without_install_origin_files(toc: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Analysis's datas less every direct_url.json: PyInstaller itself collects a whole dist-info
    folder, direct_url.json included, for each ``importlib.metadata.version("name")`` it finds in
    the code (spdesk/__init__.py asks for spdesk's), past what the spec gave it."""
    return [entry for entry in toc if Path(entry[0]).name != INSTALL_ORIGIN]


def torch_has_cuda() -> bool:
    """Whether the build environment's torch is a CUDA build (a CPU build bundles no CUDA)."""
    import torch

    return torch.version.cuda is not None


# Never bundled, whatever the build venv holds (a developer's venv with the test extra has them
# all): pillow-heif's wheels carry the x265 HEVC encoder, under the GPL (installer/README.md: the
# installers read no HEIC); readline links the GPL-3 libreadline, for interactive prompts only;
# the rest is Ray, object stores, evaluation and test tooling, which the app does not run.
NOT_BUNDLED = (
    "pillow_heif", "readline", "curses", "ray", "pyarrow", "pandas", "s3fs", "gcsfs", "boto3",
    "botocore", "aiobotocore", "moto", "scipy", "ssimulacra2", "flip_evaluator", "piq", "mypy",
    "hypothesis", "pytest", "_pytest", "pytestqt", "ruff", "importlinter", "grimp",
)  # fmt: skip
# Files that must never be in a bundle: the GPL HEVC encoder, should a package bring it in.
REFUSED = re.compile(r"x265|pillow_heif", re.IGNORECASE)
# torch's own C++ test programs and protoc (133 MB); torch_shm_manager is what torch runs.
TORCH_TOOLS = re.compile(r"torch[/\\](test[/\\]|bin[/\\](?!torch_shm_manager))")


def project_version(repo: Path = REPO) -> str:
    """The version pyproject.toml gives the checkout being frozen."""
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    return str(pyproject["project"]["version"])


def checked_version(installed: str, repo: Path = REPO) -> str:
    """The checkout's version, refusing a build venv whose spdesk metadata (what the frozen app
    reports, and the archive is named by) is of another version."""
    version = project_version(repo)
    if installed != version:
        raise SystemExit(
            f"The build environment's spdesk is {installed}, the checkout being frozen is "
            f"{version}: reinstall it there first (pip install -e .), so the app says its version."
        )
    return version


def refused_files(toc: list[tuple[str, str, str]]) -> list[str]:
    """The names in a TOC that no bundle may hold (see REFUSED)."""
    return [entry[0] for entry in toc if REFUSED.search(entry[0])]


def without_torch_tools(toc: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """A TOC less torch's test programs and protoc, which nothing of spdesk runs."""
    return [entry for entry in toc if not TORCH_TOOLS.search(entry[0])]


def without_cuda_runtime(toc: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """A TOC less the CUDA runtime: nothing in a CPU build uses it (transformers and kernels only
    ask it for its version, and do without it), and it would be the build machine's copy."""
    return [entry for entry in toc if not CUDA_RUNTIME.match(Path(entry[0]).name)]


# The licence notices the bundle carries (its NOTICES.txt): spdesk's own LICENSE, then each
# bundled distribution with its version and licence as its metadata declares it. PySide6 and
# shiboken6 (Qt: LGPL-3.0 or GPL) ship no licence file of their own, and the bundle said nothing
# of them.
NOTICED = (
    "PySide6_Essentials", "shiboken6", "torch", "diffusers", "transformers", "huggingface_hub",
    "safetensors", "tokenizers", "numpy", "pillow", "kornia", "torchmetrics", "platformdirs",
    "filelock", "httpx", "tqdm", "regex", "pyyaml", "packaging", "lightning_utilities",
)  # fmt: skip


def third_party_notices(repo: Path = REPO, dists: tuple[str, ...] = NOTICED) -> str:
    """The text of the bundle's NOTICES.txt (distributions missing from the build venv are
    left out)."""
    from importlib import metadata

    lines = [
        "spdesk is released under the MIT licence:",
        "",
        (repo / "LICENSE").read_text(encoding="utf-8").strip(),
        "",
        "It bundles these libraries, each under its own licence (the texts are at each",
        "project's home page; Qt and PySide6, used under the LGPL-3.0, whose text and that of the",
        "GPL-3.0 it builds on are beside this file: licenses/LGPL-3.0.txt, licenses/GPL-3.0.txt;",
        "see https://www.qt.io/licensing/open-source-lgpl-obligations; the Qt libraries are the",
        "separate files under _internal/PySide6 and may be replaced):",
        "",
    ]
    for name in dists:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        licence = meta.get("License-Expression") or meta.get("License") or _classifier_licence(meta)
        home = meta.get("Home-page") or _project_url(meta)
        lines.append(f"- {meta['Name']} {meta['Version']}: {licence or 'see its project'}"
                     + (f" ({home})" if home else ""))  # fmt: skip
    return "\n".join(lines) + "\n"


def _classifier_licence(meta: Any) -> str:
    found = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if "License" in c]
    return ", ".join(found)


def _project_url(meta: Any) -> str:
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository"):
            return url.strip()
    return ""


def notice_datas(workpath: str, repo: Path = REPO) -> list[tuple[str, str]]:
    """PyInstaller ``datas`` for the bundle's contents folder (``_internal`` with PyInstaller 6;
    linux/pack.sh copies them to the tarball's top): LICENSE, and NOTICES.txt written into the
    build's ``workpath``."""
    notices = Path(workpath) / "NOTICES.txt"
    notices.parent.mkdir(parents=True, exist_ok=True)
    notices.write_text(third_party_notices(repo), encoding="utf-8")
    # The LGPL asks that its text and the GPL's travel with the Qt libraries; PySide6's wheels
    # carry neither (installer/licenses holds the FSF's verbatim texts).
    texts = [(str(p), "licenses") for p in sorted((repo / "installer" / "licenses").glob("*.txt"))]
    return [(str(repo / "LICENSE"), "."), (str(notices), "."), *texts]
