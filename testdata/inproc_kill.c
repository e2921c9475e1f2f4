// Runs for a few seconds calling a probed function, for a tracer that attaches, patches it and
// is then killed with SIGKILL: the program must finish on its own with the same checksum as an
// untraced run. The work is a fixed number of rounds (so the checksum never depends on timing),
// each a batch of calls followed by a 1 ms sleep (so the run lasts about ROUNDS ms whatever the
// CPU speed).
//
// Usage: inproc_kill [ROUNDS [CALLS_PER_ROUND [PATCH_WAIT_SECONDS]]]   (defaults 5000, 20000, 0)
// With PATCH_WAIT_SECONDS, the counted rounds start only once kwork is seen patched (or that many
// seconds have passed): however long a tracer takes to start and attach, it is killed while the
// counted rounds run. The waiting rounds call kwork the same way but count in neither output line.
// stdout:  ready <pid>                 once, flushed, after the first call of kwork
//          count kwork <calls>         calls of the counted rounds (+1 for the call before ready)
//          checksum <16 hex digits>
// stderr:  patched round <r>           once, flushed, the first time kwork's first bytes in memory
//                                      differ from its bytes in /proc/self/exe (a tracer's patch);
//                                      r counts rounds from the start, waiting rounds included
//          patched rounds <n>          at the end: rounds that saw kwork patched (0 untraced)
// Exit code 0; 2 on a bad argument; 5 if kwork's bytes in the file could not be read.
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { CHECKED_BYTES = 8 };

static volatile uint64_t sink;

__attribute__((noinline, noclone)) uint64_t kwork(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return (x + 0x632be59bd9b4e019ULL) * 0x94d049bb133111ebULL;
}

struct lookup {
    uintptr_t address;
    long file_offset;
};

// The main program is the first object dl_iterate_phdr reports; map the address back to a file
// offset through the PT_LOAD header that contains it.
static int find_offset(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct lookup *l = data;
    uintptr_t vaddr = l->address - info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && vaddr >= ph->p_vaddr && vaddr < ph->p_vaddr + ph->p_filesz) {
            l->file_offset = (long)(vaddr - ph->p_vaddr + ph->p_offset);
            return 1;
        }
    }
    return 1; // only the first object (the executable) is of interest
}

// kwork's first bytes as the file has them, read once: comparing against memory each round
// then costs a memcmp, not a file read.
static int read_original(unsigned char *out)
{
    struct lookup l = { (uintptr_t)&kwork, -1 };
    dl_iterate_phdr(find_offset, &l);
    if (l.file_offset < 0)
        return -1;
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = pread(fd, out, CHECKED_BYTES, l.file_offset);
    close(fd);
    return n == CHECKED_BYTES ? 0 : -1;
}

static void check_patched(const unsigned char *original, long round, long *patched_rounds)
{
    if (memcmp(original, (const void *)&kwork, CHECKED_BYTES) != 0) {
        if ((*patched_rounds)++ == 0) {
            fprintf(stderr, "patched round %ld\n", round);
            fflush(stderr);
        }
    }
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 5000;
    long per_round = argc > 2 ? atol(argv[2]) : 20000;
    long patch_wait = argc > 3 ? atol(argv[3]) : 0;
    if (rounds < 1 || per_round < 1 || patch_wait < 0) {
        fprintf(stderr, "usage: inproc_kill [ROUNDS>0 [CALLS_PER_ROUND>0 [PATCH_WAIT_SECONDS>=0]]]\n");
        return 2;
    }
    unsigned char original[CHECKED_BYTES];
    if (read_original(original) != 0) {
        fprintf(stderr, "inproc_kill: cannot read kwork's bytes from /proc/self/exe\n");
        return 5;
    }

    uint64_t checksum = kwork(0);
    long calls = 1;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);

    const struct timespec pause = { 0, 1000000 };
    long patched_rounds = 0, round = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (; patched_rounds == 0; round++) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) >= patch_wait * 1000000000L)
            break;
        for (long i = 0; i < per_round; i++)
            sink += kwork((uint64_t)i);
        check_patched(original, round, &patched_rounds);
        nanosleep(&pause, NULL);
    }
    for (long r = 0; r < rounds; r++, round++) {
        for (long i = 0; i < per_round; i++) {
            checksum = checksum * 31 + kwork((uint64_t)calls);
            calls++;
        }
        check_patched(original, round, &patched_rounds);
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "patched rounds %ld\n", patched_rounds);
    printf("count kwork %ld\n", calls);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
