"""Offline differential fuzz of the pure-Python HDF5 reader against the h5py child.

Mutates files holding every layout the reader answers (chunk B-trees, filters, external files, soft,
external and compact links, virtual datasets) near their metadata and checks each mutant is declined or
answered exactly as the child answers it. With ``vds`` as third argument it mutates only the virtual
dataset mappings (global heap objects) and fixes their checksums up, so that the mapping parser itself
is exercised. Usage: PYTHONPATH=src:tests python scripts/fuzz_hdf5_inprocess.py [cases] [seed] [vds]
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import h5py

from formats import test_hdf5_inprocess as t
from kerasguard.formats.context import ReadContext
from kerasguard.policy import Limits
from support.h5craft import h5file

BUILDERS = [
    t._attack_base,
    t._many_links,
    t._partial_chunks,
    t._external_files,
    t._fuzz_base,
    t._empty_compact,
    t._vds_base,
    t._virtual_over_64,
    t._virtual_none,
]
VDS_BUILDERS = [t._vds_base, t._virtual_over_64, t._virtual_none]


def hot_offsets(path: Path, data: bytes) -> list[int]:
    hot = [i for sig in (b"TREE", b"SNOD", b"HEAP", b"GCOL") for i in t._find_all(data, sig)]
    with h5py.File(path, "r") as f:
        f.visit(lambda name: hot.append(h5py.h5o.get_info(f.id, name.encode()).addr) and None)
    return sorted(set(hot))


def main() -> None:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    vds = len(sys.argv) > 3 and sys.argv[3] == "vds"
    ctx = ReadContext(limits=Limits())
    answered = mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bases = []
        for build in VDS_BUILDERS if vds else BUILDERS:
            path = h5file(folder / f"{build.__name__}.h5", build)
            data = path.read_bytes()
            bases.append((data, hot_offsets(path, data)))
        for case in range(cases):
            data, hot = bases[case % len(bases)]
            mutated = bytearray(data)
            if vds:
                start, size = rng.choice(t.vds_objects(data))
                for _ in range(rng.randint(1, 3)):
                    mutated[start + rng.randrange(size - 4)] = rng.randrange(256)
                mutated = bytearray(t.with_checksum(mutated, start, size))
            for _ in range(0 if vds else rng.randint(1, 3)):
                near = rng.random() < 0.8  # near metadata, else anywhere
                pos = rng.choice(hot) + rng.randint(0, 400) if near else rng.randrange(len(data))
                if pos < len(mutated):
                    mutated[pos] = rng.randrange(256)
            try:
                answered += t.check_mutant(bytes(mutated), folder, ctx)
            except AssertionError:
                mismatches += 1
                (folder.parent / f"hdf5-mismatch-{case}.h5").write_bytes(bytes(mutated))
    ctx.close()
    print(f"{cases} mutants, {answered} answered in-process, {mismatches} mismatches")


if __name__ == "__main__":
    main()
