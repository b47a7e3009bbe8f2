"""Reads `perf script` output of allocator (or clock) uprobes; counts each call under the
innermost frame of our code (or the first frame outside the allocator, libc's clock and std),
for one thread."""
import sys, collections, re
want = sys.argv[1]
counts = collections.Counter(); total = 0
skip = re.compile(r'^(<\[|<[a-z0-9_]+ as |<T as core::convert|<&mut alloc|bytes::|<bytes::|alloc::|core::|std::|<alloc::|<core::|<std::|__rust|_mi_|mi_|<mimalloc|<T as alloc|<str as alloc|<\[T\]|<u64 as alloc|<usize as alloc|<alloc|hashbrown::raw|<hashbrown|\[unknown\]|clock_gettime|__clock_gettime|__GI___clock_gettime|__vdso)')
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
what = sys.argv[3] if len(sys.argv) > 3 else "allocator calls"
print(f"{total} {what} in {want} over {n} requests: {total/n:.1f} per request (samples lost are not counted)")
for f, c in counts.most_common(40):
    print(f"{c/n:6.2f}  {f[:150]}")
