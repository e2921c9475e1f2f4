// A hostile target: it calls a probed function and, every few calls, overwrites every mapping of
// its own that a tracer's in-process hit path writes to (the rings and counters, mappings of a
// memfd named "uprec-ring") with garbage: random bytes, all ones, all zeros, and small numbers
// that look like plausible indices and sizes. Whatever the tracer reads back from those mappings
// is untrusted; the tracer must neither crash, hang nor change this program's behaviour.
//
// Usage: inproc_scribble [CALLS [EVERY]]   (defaults 1000000 and 50000)
// stdout:  count scrib <CALLS>
//          checksum <16 hex digits>
// stderr:  scribbled <rounds> rounds <mappings> mappings <bytes> bytes <skipped> read-only
//          (mappings and bytes summed over rounds; untraced they are 0. A read-only ring
//          mapping is left alone, since writing it would only crash this program)
// Exit code 0; 2 on a bad argument.
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_random(void)
{
    // xorshift64: fixed seed, so a failing run can be reproduced byte for byte.
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

__attribute__((noinline, noclone)) uint64_t scrib(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 0x9e3779b97f4a7c15ULL + 3;
}

struct totals {
    long rounds, mappings, bytes, skipped;
};

static void fill(unsigned char *start, size_t length, int pattern)
{
    uint64_t word;
    for (size_t i = 0; i + sizeof word <= length; i += sizeof word) {
        switch (pattern) {
        case 0: word = next_random(); break;
        case 1: word = UINT64_MAX; break;
        case 2: word = 0; break;
        default: word = next_random() % 4096; break; // looks like an index or a record size
        }
        memcpy(start + i, &word, sizeof word);
    }
}

static void scribble(struct totals *t)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps)
        return;
    // Collected first, written after the file is closed, so the round's targets are the
    // mappings as they were when it started.
    enum { MAX_TARGETS = 256 };
    uintptr_t starts[MAX_TARGETS], ends[MAX_TARGETS];
    int targets = 0;
    char line[512];
    while (fgets(line, sizeof line, maps) && targets < MAX_TARGETS) {
        if (!strstr(line, "memfd:uprec-ring"))
            continue;
        uintptr_t start, end;
        char perms[5];
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &start, &end, perms) != 3)
            continue;
        if (perms[1] != 'w') {
            t->skipped++;
            continue;
        }
        starts[targets] = start;
        ends[targets] = end;
        targets++;
    }
    fclose(maps);
    int pattern = (int)(t->rounds % 4);
    for (int i = 0; i < targets; i++) {
        fill((unsigned char *)starts[i], ends[i] - starts[i], pattern);
        t->mappings++;
        t->bytes += (long)(ends[i] - starts[i]);
    }
    t->rounds++;
}

int main(int argc, char **argv)
{
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    long every = argc > 2 ? atol(argv[2]) : 50000;
    if (calls < 1 || every < 1) {
        fprintf(stderr, "usage: inproc_scribble [CALLS>0 [EVERY>0]]\n");
        return 2;
    }
    struct totals t = { 0, 0, 0, 0 };
    uint64_t checksum = 0;
    for (long i = 0; i < calls; i++) {
        checksum = checksum * 31 + scrib((uint64_t)i);
        if ((i + 1) % every == 0)
            scribble(&t);
    }
    fprintf(stderr, "scribbled %ld rounds %ld mappings %ld bytes %ld read-only\n", t.rounds, t.mappings, t.bytes, t.skipped);
    printf("count scrib %ld\n", calls);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
