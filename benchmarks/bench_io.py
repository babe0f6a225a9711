"""I/O benchmark of the format library against peers measured in the same run.

Builds a file of N float32 tensors (default 1,000 tensors, 1 GiB in all) and prints:
- open + index time (headers only), and open + every tensor's name, dtype and shape, next to
  safetensors and gguf-py (when installed) and a plain ``struct.unpack`` walk of the same
  file (the floor a Python reader can reach);
- time to materialise every tensor, against ``numpy.fromfile`` on the same bytes and against
  safetensors (when installed) on the same tensors;
- write throughput against ``ndarray.tofile``: written durably (to a temporary file, synced,
  renamed over the destination, the folder synced — the writer's own contract, so the fair
  peer), with only an ``fsync``, and without one; and
  appending the same tensors to an existing file (each blob's header written as it closes);
- the writer's peak memory (resident set growth while writing, in a child process).

Targets: open + headers <= 3 ms and open + every tensor's name, dtype and shape <= 10 ms for
1,000 tensors, independent of data size; materialising
>= 0.9x numpy.fromfile; writing >= 0.8x a durable tofile; writer peak memory <= largest tensor +
64 MiB.

    python benchmarks/bench_io.py [--tensors 1000] [--mib-per-tensor 1] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import popef


def best_of(fn, repeat=5, before=None):
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def tensors(count, elements, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random(elements, dtype=np.float32)
    for i in range(count):
        yield f"layer{i}.weight", base + np.float32(i)


def write_popef(path, items):
    with popef.Writer(path) as writer:
        for name, array in items:
            writer.write_tensor(name, array)


def append_popef(path, items):
    open(path, "wb").close()
    with popef.Writer(path, "a") as writer:
        for name, array in items:
            writer.write_tensor(name, array)


def write_tofile(path, items, sync=False):
    with open(path, "wb") as f:
        for _, array in items:
            array.tofile(f)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def write_tofile_durably(path, items):
    """What a durable, atomic writer does: a temporary file, synced, renamed over the
    destination, and the folder synced (the popef Writer's contract)."""
    temp = path + ".tmp"
    write_tofile(temp, items, sync=True)
    os.replace(temp, path)
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def writer_peak_child(path, count, elements):
    """Run in a child: RSS growth while writing, so nothing else in this process counts."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    write_popef(path, tensors(count, elements))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tensors", type=int, default=1000)
    parser.add_argument("--mib-per-tensor", type=float, default=1.0)
    parser.add_argument(
        "--write-rounds",
        type=int,
        default=5,
        help="alternating write runs of each writer; the best counts (default 5)",
    )
    parser.add_argument("--dir", default=None, help="where to put the files (default: a temp dir)")
    parser.add_argument("--child-peak", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_peak:
        writer_peak_child(args.child_peak[0], int(args.child_peak[1]), int(args.child_peak[2]))
        return

    count = args.tensors
    elements = int(args.mib_per_tensor * (1 << 20)) // 4
    total = count * elements * 4
    workdir = tempfile.mkdtemp(dir=args.dir)
    pop_path = os.path.join(workdir, "bench.popef")
    raw_path = os.path.join(workdir, "bench.raw")
    print(
        f"{count} float32 tensors of {elements * 4 / 2**20:.2f} MiB, {total / 2**30:.2f} GiB, "
        f"in {workdir}"
    )

    # -- write
    items = list(tensors(count, elements))  # in memory, so only writing is timed
    # Each timed write creates its file, after the page cache has written back the previous
    # one: deleting files and waiting on writeback are not part of writing. Runs alternate.
    t_pop = t_raw = t_sync = t_durable = t_append = float("inf")
    for _ in range(args.write_rounds):
        t_pop = min(
            t_pop,
            best_of(lambda: write_popef(pop_path, items), 1, lambda: _remove(pop_path, sync=True))[
                0
            ],
        )
        t_raw = min(
            t_raw,
            best_of(lambda: write_tofile(raw_path, items), 1, lambda: _remove(raw_path, sync=True))[
                0
            ],
        )
        t_sync = min(
            t_sync,
            best_of(
                lambda: write_tofile(raw_path, items, sync=True),
                1,
                lambda: _remove(raw_path, sync=True),
            )[0],
        )
        t_durable = min(
            t_durable,
            best_of(
                lambda: write_tofile_durably(raw_path, items),
                1,
                lambda: _remove(raw_path, sync=True),
            )[0],
        )
        t_append = min(
            t_append,
            best_of(lambda: append_popef(pop_path, items), 1, lambda: _remove(pop_path, sync=True))[
                0
            ],
        )
    items.clear()  # free the 1 GiB before reading
    w_pop, w_raw, w_sync, w_durable, w_append = (
        total / t for t in (t_pop, t_raw, t_sync, t_durable, t_append)
    )
    print(
        f"write        popef {w_pop / 1e9:6.2f} GB/s   "
        f"tofile, durably {w_durable / 1e9:6.2f} GB/s   "
        f"ratio {w_pop / w_durable:5.2f}x (target >= 0.8x; both sync the file and the folder)"
    )
    print(f"             tofile + fsync {w_sync / 1e9:6.2f} GB/s   ratio {w_pop / w_sync:5.2f}x")
    print(
        f"             tofile without fsync {w_raw / 1e9:6.2f} GB/s   ratio {w_pop / w_raw:5.2f}x"
    )
    print(
        f"append       popef {w_append / 1e9:6.2f} GB/s   "
        f"ratio to creating {w_append / w_pop:5.2f}x"
    )

    # -- open + index
    def open_index():
        reader = popef.Reader()
        reader.parse_file(pop_path)
        blobs = reader.blobs()
        reader.close()
        return blobs

    t_open, t_open_med = best_of(open_index, 7)
    print(
        f"open+index   {t_open * 1e3:6.2f} ms (median {t_open_med * 1e3:.2f}) for {count} blobs "
        f"(target <= 3 ms)"
    )
    small = os.path.join(workdir, "small.popef")
    write_popef(small, tensors(count, 16))

    def open_small():
        reader = popef.Reader()
        reader.parse_file(small)
        reader.blobs()
        reader.close()

    t_small, _ = best_of(open_small, 7)
    print(
        f"             same blob count with 64-byte tensors: {t_small * 1e3:.2f} ms "
        f"(independent of data size: ratio {t_open / t_small:.2f})"
    )
    list_infos(pop_path, small, count, workdir)

    reader = popef.Reader()
    reader.parse_file(pop_path)
    t_infos, _ = best_of(lambda: popef.Reader.tensors(reader), 1)
    print(f"decode infos {t_infos * 1e3:6.2f} ms for {count} tensor infos (first access, lazy)")
    readers = reader.tensors()

    # -- materialise
    offsets = [(t.blob.payload_offset, t.info.tensor_info.num_elements) for t in readers]

    def with_popef():
        return [t.read() for t in readers]

    def with_fromfile():
        with open(pop_path, "rb") as f:
            return [_fromfile(f, o, n) for o, n in offsets]

    t_p, _ = best_of(with_popef)
    t_f, _ = best_of(with_fromfile)
    check = with_popef()
    assert all(np.array_equal(a, b) for a, b in zip(check[:3], with_fromfile()[:3]))
    print(
        f"materialise  popef {total / t_p / 1e9:6.2f} GB/s   "
        f"numpy.fromfile {total / t_f / 1e9:6.2f} GB/s"
        f"   ratio {t_f / t_p:5.2f}x (target >= 0.9x)"
    )
    t_view, _ = best_of(lambda: [t.data() for t in readers])
    print(f"             zero-copy views: {t_view * 1e3:.2f} ms for all {count}")

    try:
        from safetensors.numpy import load_file, save_file
    except ImportError:
        print("safetensors  not installed (pip install '.[bench]'), skipped")
    else:
        st_path = os.path.join(workdir, "bench.safetensors")
        save_file(dict(tensors(count, elements)), st_path)
        t_s, _ = best_of(lambda: load_file(st_path))
        print(
            f"             safetensors.load_file {total / t_s / 1e9:6.2f} GB/s   "
            f"ratio {t_s / t_p:5.2f}x"
        )
        os.unlink(st_path)
    reader.close()
    readers.clear()
    check.clear()

    # -- writer memory
    out = subprocess.run(
        [sys.executable, __file__, "--child-peak", pop_path, str(count), str(elements)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_mib = int(out.stdout.strip()) / 1024
    print(
        f"writer peak  {peak_mib:6.1f} MiB RSS growth; "
        f"largest tensor {elements * 4 / 2**20:.1f} MiB "
        f"(target <= largest + 64 MiB)"
    )
    for path in (pop_path, raw_path, small):
        os.unlink(path)
    os.rmdir(workdir)


def popef_infos(path):
    """Open ``path`` and list every tensor's name, dtype and shape."""
    with popef.Reader() as reader:
        reader.parse_file(path)
        return [
            (t.name, t.info.tensor_info.dtype, t.info.tensor_info.shape) for t in reader.tensors()
        ]


def struct_infos(path):
    """The floor: a walk of the same file's headers and tensor infos with ``struct`` alone,
    checking nothing (what any Python reader of this layout must at least do)."""
    header, u32, head = struct.Struct("<8s8sQHHIQII"), struct.Struct("<I"), struct.Struct("<BI")
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        end, offset = os.fstat(fd).st_size, 0
        while offset < end:
            fields = header.unpack(os.pread(fd, 48, offset))
            info = os.pread(fd, fields[5], offset + 48)
            (length,) = u32.unpack_from(info, 0)
            dtype, rank = head.unpack_from(info, 4 + length)
            out.append(
                (
                    info[4 : 4 + length].decode(),
                    dtype,
                    struct.unpack_from(f"<{rank}q", info, 9 + length),
                )
            )
            offset += fields[2]
    finally:
        os.close(fd)
    return out


def list_infos(path, small, count, workdir):
    """Open + every tensor's name, dtype and shape, against the peers that are installed."""
    t_big, _ = best_of(lambda: popef_infos(path), 7)
    t_small, t_small_med = best_of(lambda: popef_infos(small), 7)
    t_struct, _ = best_of(lambda: struct_infos(small), 7)
    assert [(n, int(d), s) for n, d, s in popef_infos(small)] == struct_infos(small)
    print(
        f"open+infos   {t_small * 1e3:6.2f} ms (median {t_small_med * 1e3:.2f}) for {count} "
        f"tensors' name, dtype and shape (target <= 10 ms); {t_big * 1e3:.2f} ms with the "
        f"large tensors"
    )
    print(f"             struct.unpack walk, no checks: {t_struct * 1e3:.2f} ms")
    try:
        from safetensors import safe_open
        from safetensors.numpy import save_file
    except ImportError:
        print("             safetensors not installed (pip install '.[bench]'), skipped")
    else:
        st_path = os.path.join(workdir, "small.safetensors")
        save_file(dict(tensors(count, 16)), st_path)

        def safetensors_infos():
            with safe_open(st_path, "numpy") as f:
                return [
                    (k, f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()
                ]

        t_st, _ = best_of(safetensors_infos, 7)
        print(f"             safetensors safe_open + get_slice: {t_st * 1e3:.2f} ms")
        os.unlink(st_path)
    try:
        import gguf
    except ImportError:
        print("             gguf-py not installed (pip install gguf), skipped")
    else:
        gguf_path = os.path.join(workdir, "small.gguf")
        writer = gguf.GGUFWriter(gguf_path, "bench")
        for name, array in tensors(count, 16):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        t_gguf, _ = best_of(
            lambda: [
                (t.name, t.tensor_type, tuple(t.shape)) for t in gguf.GGUFReader(gguf_path).tensors
            ],
            7,
        )
        print(f"             gguf-py GGUFReader: {t_gguf * 1e3:.2f} ms")
        os.unlink(gguf_path)


def _remove(path, sync=False):
    if os.path.exists(path):
        os.unlink(path)
    if sync and hasattr(os, "sync"):
        os.sync()


def _fromfile(f, offset, count):
    f.seek(offset)
    return np.fromfile(f, np.float32, count)


if __name__ == "__main__":
    main()
