"""Take a GPU grid to the lent device machine: pack here, stash and unpack there.

The device machine starts bare, reaches no network, and a call carries at most 64 MiB, while
the MPNet teacher's weights alone are 438 MB. So, here:

    python -m benchmarks.device_bundle pack            # writes .gpu/ and prints the calls

writes the teacher's weights rounded to fp16 (tensor by tensor, in parts of ``--part-mib``),
the wheels the device lacks (pydantic, dvclive, dvc and their needs, for CPython 3.12) and the
public data sets under ``.gpu/`` (git-ignored through ``.git/info/exclude``), and prints one
``run`` per group of them: each carries its group and copies it to ``/root/stash`` with

    python3 benchmarks/device_bundle.py stash .gpu /root/stash

Calls must follow each other while the machine is warm (30 s). The last one rebuilds the
model folder (fp32 again, ``save_pretrained`` layout) before the grid:

    python3 benchmarks/device_bundle.py unpack /root/stash /root/teacher

This file runs there before any wheel is installed: the standard library only at the top.
The fp16 rounding is the one difference from the weights here (study
``docs/experiments/2026-12-04-teacher-recipe-h200.md``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
CALL_LIMIT_MIB = 64  # what one call carries, the working tree included
WHEELS = (  # what the device's Python 3.12 lacks; versions are the ones installed here
    *("annotated-types", "atpublic", "diskcache", "dpath", "dulwich", "dvc", "dvc-data"),
    *("dvc-http", "dvc-objects", "dvc-render", "dvc-studio-client", "dvclive", "flatten-dict"),
    *("flufl.lock", "funcy", "orjson", "pydantic", "pydantic-core", "pydot", "pygtrie"),
    *("ruamel.yaml", "scmrepo", "sniffio", "sqltrie", "truststore", "typing-inspection"),
    *("voluptuous", "wcwidth", "zc.lockfile"),
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
WEIGHTS = "model.safetensors"
GRID = (  # the last call's command after the stash (the H200 study's grid)
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site /root/stash/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD/src:$PWD "
    "HF_HUB_OFFLINE=1 HYBRIDSCORE_CACHE=/tmp/hscache PYTHONUNBUFFERED=1 && "
    "python3 benchmarks/device_bundle.py unpack /root/stash /root/teacher && "
    "python3 -m benchmarks.bench_sets --datasets /root/stash/datasets --jobs 12 "
    "--discard-models -S train_teacher.model=/root/teacher "
    "-S train_teacher.mixed_precision=bf16 -S train_teacher.checkpoint_every_steps=null "
    "--out $OUT/sets.jsonl"
)


def size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / MIB


def pack_model(folder: Path, out: Path, part_mib: float) -> list[Path]:
    """``folder``'s files, its weights rounded to fp16, as one tar split into part folders
    ``out/model-1`` … (one ``part`` file each, at most ``part_mib``)."""
    import io

    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(folder / WEIGHTS)
    halves = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    weights = save(halves, metadata={"format": "pt"})
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / "model.tar"
    with tarfile.open(bundle, "w") as tar:
        for path in sorted(folder.iterdir()):
            if path.name != WEIGHTS:
                tar.add(path, arcname=path.name)
        info = tarfile.TarInfo(WEIGHTS)
        info.size = len(weights)
        tar.addfile(info, io.BytesIO(weights))
    parts = []
    with bundle.open("rb") as stream:
        while chunk := stream.read(int(part_mib * MIB)):
            part = out / f"model-{len(parts) + 1}"
            part.mkdir()
            (part / "part").write_bytes(chunk)
            parts.append(part)
    bundle.unlink()
    return parts


def download_wheels(out: Path) -> Path:
    """The cp312 manylinux wheels of :data:`WHEELS`, at the versions installed here."""
    wheels = out / "wheels"
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    target = ["--python-version", "3.12", "--implementation", "cp", *platforms]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*command, *target, "-d", str(wheels), *pins], check=True)
    return wheels


def calls(items: list[Path], budget_mib: float) -> list[list[Path]]:
    """The items grouped into as few calls as fit ``budget_mib`` each (first fit, largest
    first); an item larger than the budget is an error, not a call that will be refused."""
    groups: list[tuple[float, list[Path]]] = []
    for size, item in sorted(((size_mib(i), i) for i in items), reverse=True):
        if size > budget_mib:
            raise SystemExit(f"{item} is {size:.1f} MiB, over the {budget_mib:.1f} MiB a call has")
        for index, (used, group) in enumerate(groups):
            if used + size <= budget_mib:
                groups[index] = (used + size, [*group, item])
                break
        else:
            groups.append((size, [item]))
    return [group for _, group in groups]


def stash(source: Path, stash_dir: Path) -> None:
    """On the device: copy whatever of ``source`` this call carried into ``stash_dir``."""
    stash_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir()) if source.is_dir() else []:
        shutil.copytree(item, stash_dir / item.name, dirs_exist_ok=True)
        print(f"stashed {item.name} ({size_mib(item):.1f} MiB)")


def unpack(stash_dir: Path, target: Path) -> None:
    """On the device: join the model parts, untar, and cast the fp16 weights back to fp32."""
    import torch
    from safetensors.torch import load_file, save_file

    parts = sorted(stash_dir.glob("model-*"), key=lambda p: int(p.name.split("-")[1]))
    expected = [f"model-{n}" for n in range(1, len(parts) + 1)]
    if not parts or [p.name for p in parts] != expected:
        raise SystemExit(f"{stash_dir}: model parts {[p.name for p in parts]}, not 1..n")
    target.mkdir(parents=True, exist_ok=True)
    bundle = target / "model.tar"
    with bundle.open("wb") as stream:
        for part in parts:
            stream.write((part / "part").read_bytes())
    with tarfile.open(bundle) as tar:
        tar.extractall(target, filter="data")
    bundle.unlink()
    tensors = load_file(target / WEIGHTS)
    floats = {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}
    save_file(floats, target / WEIGHTS, metadata={"format": "pt"})
    print(f"unpacked {len(parts)} parts into {target} ({size_mib(target):.0f} MiB)")


def pack(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from hybridscore.modeling import resolve_model

    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    items = pack_model(Path(resolve_model(args.model).path), out, args.part_mib)
    if args.datasets.is_dir():
        shutil.copytree(args.datasets, out / "datasets")
        items.append(out / "datasets")
    if not args.no_wheels:
        items.append(download_wheels(out))
    tree = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    tree_mib = sum((REPO / p).stat().st_size for p in tree if (REPO / p).is_file()) / MIB
    groups = calls(items, CALL_LIMIT_MIB - tree_mib - 1)
    rel = [
        [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in g] for g in groups
    ]
    where = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    stash_it = f"python3 benchmarks/device_bundle.py stash {where} /root/stash"
    plan = {"calls": [{"carry": g, "command": stash_it} for g in rel], "then": GRID}
    print(json.dumps(plan, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.device_bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("pack", help="here: write the bundle and print the calls")
    p.add_argument("--model", default="pypi:all-mpnet-base-v2", help="a params model spec")
    p.add_argument("--out", type=Path, default=REPO / ".gpu")
    p.add_argument("--part-mib", type=float, default=56)
    p.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    p.add_argument("--no-wheels", action="store_true")
    s = verbs.add_parser("stash", help="there: keep what this call carried")
    s.add_argument("source", type=Path)
    s.add_argument("stash_dir", type=Path)
    u = verbs.add_parser("unpack", help="there: rebuild the model folder from the stash")
    u.add_argument("stash_dir", type=Path)
    u.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "pack":
        pack(args)
    elif args.verb == "stash":
        stash(args.source, args.stash_dir)
    else:
        unpack(args.stash_dir, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
