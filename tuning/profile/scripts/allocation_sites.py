"""Reads `perf script` output of allocator uprobes; counts each allocation under the innermost
frame of our code (or the first frame outside the allocator and std), for one thread."""
import sys, collections, re
want = sys.argv[1]
counts = collections.Counter(); total = 0
skip = re.compile(r'^(<\[|<[a-z0-9_]+ as |<T as core::convert|<&mut alloc|bytes::|<bytes::|alloc::|core::|std::|<alloc::|<core::|<std::|__rust|_mi_|mi_|<mimalloc|<T as alloc|<str as alloc|<\[T\]|<u64 as alloc|<usize as alloc|<alloc|hashbrown::raw|<hashbrown|\[unknown\])')
sample = None
for line in sys.stdin:
    if not line.strip():
        if sample is not None:
            comm, frames = sample
            if comm == want:
                total += 1
                pick = next((f for f in frames if not skip.match(f)), frames[-1] if frames else '?')
                counts[pick] += 1
        sample = None
        continue
    if not line.startswith(('\t', ' ')):
        sample = (line.split()[0], [])
    elif sample is not None:
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            sym = re.sub(r' \(/.*\)$', '', parts[1]).replace(' (inlined)', '')
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
            sample[1].append(sym)
n = int(sys.argv[2])
print(f"{total} allocator calls in {want} over {n} requests: {total/n:.1f} per request (samples lost are not counted)")
for f, c in counts.most_common(40):
    print(f"{c/n:6.2f}  {f[:150]}")
