#!/usr/bin/env python3
"""Names the frames `perf script` leaves as [unknown] in one binary.

Debian's perf 6.1 cannot read the symbols of the platform's release binary
("symsrc__init: cannot get elf header") although it unwinds through it, so
its frames come out as file offsets. This filter turns each offset into an
address (the binary's LOAD segments), asks llvm-symbolizer for the function
and its inlined callers (line tables are in release builds), and writes the
stacks back with one line per frame, innermost first, as perf does.

Usage: perf script ... | python3 load/perf-symbolize.py BINARY | inferno-collapse-perf
"""

import re
import struct
import subprocess
import sys

FRAME = re.compile(r"^(\s+)([0-9a-f]+) \[unknown\] \((.+)\)$")


def load_segments(path):
    """(file offset, size, address) of every PT_LOAD of a 64-bit ELF."""
    with open(path, "rb") as elf:
        header = elf.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            sys.exit(f"error: {path} is not a 64-bit ELF file")
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        segments = []
        for i in range(phnum):
            elf.seek(phoff + i * phentsize)
            kind, _flags, offset, vaddr, _paddr, filesz = struct.unpack("<IIQQQQ", elf.read(40))
            if kind == 1:
                segments.append((offset, filesz, vaddr))
        return segments


def address(segments, offset):
    for start, size, vaddr in segments:
        if start <= offset < start + size:
            return offset - start + vaddr
    return offset


def symbolize(binary, addresses):
    """{address: [function, ...]} innermost first, from one llvm-symbolizer run."""
    if not addresses:
        return {}
    query = "".join(f"0x{a:x}\n" for a in addresses)
    out = subprocess.run(
        ["llvm-symbolizer", f"--obj={binary}", "--inlines", "--functions=linkage", "--demangle"],
        input=query, capture_output=True, text=True, check=True,
    ).stdout
    names = {}
    blocks = out.split("\n\n")
    for a, block in zip(addresses, blocks):
        lines = [line for line in block.splitlines() if line.strip()]
        functions = [re.sub(r"::h[0-9a-f]{16}$", "", f) for f in lines[0::2]]
        names[a] = [f for f in functions if f != "??"] or [f"[{binary.rsplit('/', 1)[-1]}]"]
    return names


def main():
    binary = sys.argv[1]
    segments = load_segments(binary)
    text = sys.stdin.read().splitlines()
    wanted = sorted({
        address(segments, int(m.group(2), 16))
        for m in map(FRAME.match, text)
        if m and m.group(3) == binary
    })
    names = symbolize(binary, wanted)
    out = sys.stdout
    for line in text:
        m = FRAME.match(line)
        if not m or m.group(3) != binary:
            out.write(line + "\n")
            continue
        indent, offset, module = m.group(1), m.group(2), m.group(3)
        for function in names.get(address(segments, int(offset, 16)), ["[unknown]"]):
            out.write(f"{indent}{offset} {function} ({module})\n")


if __name__ == "__main__":
    main()
